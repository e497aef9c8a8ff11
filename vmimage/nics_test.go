package vmimage

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// frrLayout is Antidote's frr image: the management NIC at 03.0 with the
// data NICs as functions 1-7 of the same slot.
func frrManifest() Manifest {
	names := make([]string, 7)
	for i := range names {
		names[i] = fmt.Sprintf("enp0s3f%d", i+1)
	}
	return Manifest{NetworkInterfaces: names, NICs: NICLayout{Placement: PlaceFunctions,
		Data: PCIAddr{Slot: 3, Function: 1}, Management: PCIAddr{Slot: 3}, ManagementName: "enp0s3f0"}}
}

func TestDefaultLayoutIsTheLaunchersHistoricOne(t *testing.T) {
	l := (&Manifest{}).Layout()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.Capacity() != 24 || l.Model != DefaultNICModel {
		t.Fatalf("capacity %d model %s; want 24 virtio-net-pci", l.Capacity(), l.Model)
	}
	mg := l.ManagementNIC()
	if mg.QEMU() != "addr=0x2" || mg.Name != "eth0" || !mg.KernelName() {
		t.Errorf("management = %+v (%s)", mg, mg.QEMU())
	}
	for i, want := range map[int]string{1: "addr=0x3", 2: "addr=0x4", 24: "addr=0x1a"} {
		n, err := l.DataNIC(i)
		if err != nil || n.QEMU() != want || n.Name != fmt.Sprintf("eth%d", i) || !n.KernelName() {
			t.Errorf("DataNIC(%d) = %+v %s, %v; want %s", i, n, n.QEMU(), err, want)
		}
	}
	if _, err := l.DataNIC(25); !errors.Is(err, ErrNICLayout) || !strings.Contains(err.Error(), "holds 24") {
		t.Errorf("DataNIC(25) = %v", err)
	}
}

func TestFunctionsLayoutAsAntidotesFRR(t *testing.T) {
	m := frrManifest()
	l := m.Layout()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.Capacity() != 7 {
		t.Fatalf("capacity %d; want 7", l.Capacity())
	}
	mg := l.ManagementNIC()
	if mg.QEMU() != "addr=0x3,multifunction=on" || PathName(mg) != "enp0s3f0" || mg.KernelName() {
		t.Errorf("management = %+v %s %s", mg, mg.QEMU(), PathName(mg))
	}
	for i := 1; i <= 7; i++ {
		n, err := l.DataNIC(i)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("enp0s3f%d", i)
		if n.QEMU() != fmt.Sprintf("addr=0x3.0x%d", i) || n.Name != want || PathName(n) != want || n.Addr.Sysfs() != fmt.Sprintf("0000:00:03.%d", i) {
			t.Errorf("DataNIC(%d) = %+v %s %s", i, n, n.QEMU(), n.Addr.Sysfs())
		}
	}
	_, err := l.DataNIC(8)
	if !errors.Is(err, ErrNICLayout) || !strings.Contains(err.Error(), "functions 1-7 of slot 3") {
		t.Errorf("DataNIC(8) = %v", err)
	}
	if got := len(l.NICs()); got != 8 {
		t.Errorf("NICs() has %d; want 8", got)
	}
}

func TestFunctionsLayoutAcrossSlots(t *testing.T) {
	// cvx: the swp NICs are functions 0-7 of slot 6, management apart.
	l := (&Manifest{NICs: NICLayout{Placement: PlaceFunctions, Data: PCIAddr{Slot: 6}, Slots: 2}}).Layout()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{1: "addr=0x6,multifunction=on", 8: "addr=0x6.0x7", 9: "addr=0x7,multifunction=on", 16: "addr=0x7.0x7"} {
		if n, err := l.DataNIC(i); err != nil || n.QEMU() != want {
			t.Errorf("DataNIC(%d) = %s, %v; want %s", i, n.QEMU(), err, want)
		}
	}
	if mg := l.ManagementNIC(); mg.QEMU() != "addr=0x2" {
		t.Errorf("management %s", mg.QEMU())
	}
	one := (&Manifest{NICs: NICLayout{Placement: PlaceFunctions, Data: PCIAddr{Slot: 6}, Slots: 1}}).Layout()
	if one.Capacity() != 8 {
		t.Errorf("one slot holds %d", one.Capacity())
	}
}

func TestLayoutValidateNamesTheField(t *testing.T) {
	frr := frrManifest().NICs
	for _, tc := range []struct {
		name string
		m    Manifest
		want []string
	}{
		{"management among the data", Manifest{NICs: NICLayout{Management: PCIAddr{Slot: 5}}}, []string{"nics.management: 05.0 is also a data NIC's address"}},
		{"empty function 0", Manifest{NICs: NICLayout{Placement: PlaceFunctions, Data: PCIAddr{Slot: 4, Function: 1}}},
			[]string{"nics.data.function: 1: function 0 of slot 4 would be empty", "put the management NIC at 04.0"}},
		{"management last", Manifest{NICs: NICLayout{Data: PCIAddr{Slot: 3}, Slots: 2, Management: PCIAddr{Slot: 9}}},
			[]string{"nics.management: 09.0 comes after the first data NIC"}},
		{"launcher's slots", Manifest{NICs: NICLayout{Data: PCIAddr{Slot: 27}}}, []string{"nics.data.slot: 27: NICs go in slots 2-26"}},
		{"past the last slot", Manifest{NICs: NICLayout{Data: PCIAddr{Slot: 20}, Slots: 8}}, []string{"nics.slots: 8 slots from slot 20 end at 27"}},
		{"function with slots", Manifest{NICs: NICLayout{Data: PCIAddr{Slot: 3, Function: 2}}}, []string{"nics.data.function: 2: with placement slots"}},
		{"placement", Manifest{NICs: NICLayout{Placement: "bus"}}, []string{`nics.placement: "bus": want slots or functions`}},
		{"model", Manifest{QEMU: QEMUHints{NICModel: "virtio-net-device"}}, []string{`qemu.nicModel: "virtio-net-device" is not a PCI NIC`}},
		{"too many names", Manifest{NICs: frr, NetworkInterfaces: strings.Fields("a b c d e f g h")}, []string{"networkInterfaces: 8 names for a layout holding 7"}},
		{"duplicate", Manifest{NetworkInterfaces: []string{"swp1", "swp1"}}, []string{`networkInterfaces[1]: "swp1" is also networkInterfaces[0]`}},
		{"kernel name elsewhere", Manifest{NetworkInterfaces: []string{"eth2"}}, []string{`networkInterfaces[0]: "eth2": ethN names are the kernel's`, "this NIC is eth1"}},
		{"bad name", Manifest{NetworkInterfaces: []string{"a/b", "lo", "sixteen-letters!"}}, []string{`networkInterfaces[0]: "a/b" is not`, `networkInterfaces[1]: "lo" is the loopback`, `networkInterfaces[2]: "sixteen-letters!" is not`}},
		{"management name", Manifest{NICs: NICLayout{ManagementName: "swp1"}, NetworkInterfaces: []string{"swp1"}}, []string{`networkInterfaces[0]: "swp1" is also nics.managementName`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Layout().Validate()
			if !errors.Is(err, ErrNICLayout) {
				t.Fatalf("Validate = %v; want ErrNICLayout", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestNICLayoutInTheManifestJSON(t *testing.T) {
	raw, err := json.Marshal(Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "nics") {
		t.Errorf("the default layout is written: %s", raw)
	}
	m := frrManifest()
	raw, _ = json.Marshal(m)
	var back Manifest
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.NICs != m.NICs || !strings.Contains(string(raw), `"nics":{"placement":"functions","data":{"slot":3,"function":1},"management":{"slot":3},"managementName":"enp0s3f0"}`) {
		t.Errorf("round trip: %s → %+v", raw, back.NICs)
	}
}
