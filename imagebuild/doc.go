// Package imagebuild builds endpoint VM images from declarative recipes
// (image.yaml) — stage 1 of endpointkit: a bootable image with the lesson
// user, DHCP on the primary interface and its management APIs, plus the
// container files that wrap it.
//
// # Recipes
//
// A recipe directory holds image.yaml ([Recipe]; JSON Schema: [Schema],
// image.schema.json) and the files it copies in. [LoadRecipe] decodes it
// strictly, as lessonmeta decodes lesson metafiles: every syntax error,
// wrong type, unknown key (with a "did you mean") and duplicate key is
// reported in one pass, each a *[RecipeError] naming PATH:LINE:COL and the
// field; inputs over 1 MiB and alias bombs are refused. Aliases and merge
// keys work; booleans and whole numbers are read as yaml.v2 read them
// (yes/no, 512.0). [Recipe.Resolve] fills the defaults (user
// antidote / antidotepassword in group sudo with passwordless sudo, SSH on
// 22, DHCP on the management NIC, suite bookworm, kernel
// linux-image-amd64) and reports every invalid value the same way.
//
// # Kinds
//
//   - initramfs: the tiny endpoint. The Debian kernel package is fetched
//     with `apt-get download` and unpacked with `dpkg-deb -x` (never
//     installed); the xz payload of vmlinuz becomes an uncompressed vmlinux
//     for PVH direct boot; `depmod -b` writes modules.dep, from which only
//     the needed modules are taken (virtio net/blk, 9p, ACPI button, evdev,
//     plus kernel.modules). The newc initramfs holds static busybox and the
//     guest agent (package imagebuild/agent) as /init. It builds in
//     seconds and is SSH-ready in about two seconds under TCG: the
//     manifest's CPU hint (qemu64,+rdrand) has the guest's RNG ready at
//     boot, and the kernel command line skips the crypto self-tests
//     (cryptomgr.notests) and ACPI PCI interrupt routing (acpi=noirq;
//     not pci=noacpi, which would also turn off the ACPI PCI hot-plug
//     that NICs added to a running endpoint need).
//   - debootstrap: a full Debian from nothing: debootstrap minbase with
//     systemd-sysv, udev, dbus, openssh-server, iproute2, sudo, python3,
//     ifupdown and isc-dhcp-client, the recipe's packages, users, files,
//     services and chroot steps; ext4 made with `mkfs.ext4 -d` (no loop
//     device), converted to a zstd-compressed qcow2 with qemu-img. It boots
//     the same vmlinux with a small initrd (the agent in stage-one mode
//     mounts /dev/vda and switches to systemd). Needs root.
//   - disk: a vendor disk (qcow2, vmdk or raw by path or URL, sha256
//     required), converted to qcow2; it boots from its own bootloader
//     (its first boot is baked, see below).
//     For images that run cloud-init, disk.cloudInit adds a NoCloud seed
//     generated in Go ([NewSeed]; seed.iso, attached read-only as a second
//     drive): it creates the recipe's users (password, groups, sudo without
//     password for group sudo, authorized keys), sets the hostname and
//     /etc/hosts to the slug, replaces the image's SSH host keys with keys
//     generated at build (listed in the manifest, so launchers pin them),
//     runs the recipe's steps once at the end of the first boot (runcmd),
//     and prints [CloudInitReadyMarker] on the console, the default
//     readiness. The hostname is the slug for every instance: a disk image
//     is not given endpointkit.hostname. Proven against a real cloud-init
//     (TestDiskCloudInitBoots: Debian's cloud-init on a disk that boots
//     from its own GRUB, see internal/imagetest.CloudInitDisk).
//   - iso: an installer ISO (iso.path or iso.url, iso.sha256; kept in the
//     raw-image store like a vendor disk) and an answer file
//     (iso.answers: format preseed, the Debian installer; the format
//     field leaves room for kickstart and autoinstall). The installer's
//     kernel and initrd are taken out of the ISO (xorriso) and booted
//     directly, with `url=` naming the answer file, served by a built-in
//     HTTP server on the QEMU user network's host address (10.0.2.2) —
//     the recipe's answers plus endpointkit's: power off at the end, and
//     a late command that runs the provisioning script ([ProvisionScript]:
//     users, sudo, sshd, the recipe's and the APIs' packages and files,
//     services and steps) in the installed system. The installer runs
//     under multi-threaded TCG on two vCPUs with the target disk's cache
//     off (cache=unsafe); an installer that waits at a question the
//     answers leave open fails the build after 30 s of silence with a
//     [*BuildVMError] naming the question from the console (the text
//     frontend, DEBIAN_FRONTEND=text). The installed disk is then baked.
//
// # Bake and per-instance identity
//
// The first boot of a disk image with disk.cloudInit, and of an iso
// image, runs once at build time and is saved into the disk (bake: false
// turns it off): the guest boots, does its first-boot work (cloud-init
// with the seed; the installed system's first start), clears what
// instances must not share (SSH host keys, machine-id, DHCP leases;
// cloud-init is disabled), prints [BakeMarker], powers off, and the disk
// is compacted. A bake that never prints its marker fails with the
// console's tail. Instances boot the baked disk without a seed.
//
// A baked image has no SSH host keys (manifest identity "fw_cfg"): each
// instance gets its hostname and fresh host keys from the launcher as the
// QEMU fw_cfg item opt/endpointkit/identity (see vmimage.Identity), which
// the guest's endpointkit-identity service installs before sshd starts.
// The launcher pins exactly those keys; a guest started without an
// identity has no host keys and no sshd.
//
// # APIs and self-tests
//
// apis: {ssh: true, netconf: true, http: {port: 8080}} declares the
// management APIs; each is true, false or a port ([APISwitch]).
// netconf installs and enables yuma123 netconfd behind sshd's netconf
// subsystem (debootstrap, iso, and baked disk images), http makes the
// port a readiness check. tests: are scripts the image's first user runs
// over SSH after boot, each expected to exit 0; they go into the
// manifest, and `imagebuild test` (qemulaunch.TestImage) and `imagebuild
// build --test` run them.
//
// # Vendor disks and the raw-image store
//
// A disk recipe's image is fetched once into the raw-image store
// ([Store]; [Options].StoreURL, `imagebuild build --store URL`), a
// gocloud.dev/blob bucket holding each image under sha256/SUM, by default
// file://CACHE/disks. The fetched bytes are kept only when their sha256 is
// disk.sha256, and every read from the store is verified again; a
// mismatch is an [ErrChecksum] naming the URL and both sums, and leaves
// nothing in the store. disk.url is http(s)://, file:///dir/name or any
// bucket URL whose path is the object key (s3://BUCKET/dir/name.vmdk?…
// reads key dir/name.vmdk from bucket s3://BUCKET?…). Quote such URLs in
// image.yaml. This package registers the file:// and mem:// drivers only;
// a program that wants s3:// or gs:// imports gocloud.dev/blob/s3blob or
// gocloud.dev/blob/gcsblob (cmd/imagebuild imports both).
//
// An S3-compatible server (MinIO and the like) is named in the URL, for
// the store and for disk.url alike:
//
//	s3://BUCKET?endpoint=http://HOST:9000&use_path_style=true&region=us-east-1
//	s3://BUCKET/KEY?endpoint=http://HOST:9000&use_path_style=true&region=us-east-1&response_checksum_validation=when_required
//
// endpoint is the server's base URL (http or https); use_path_style=true
// sends requests to HOST/BUCKET/KEY rather than BUCKET.HOST; region is
// the one the server signs with (MinIO's default is us-east-1). The
// credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or
// profile=NAME, a profile in ~/.aws). The last parameter, optional, keeps
// the AWS SDK from printing "Response has no supported checksum" for
// objects uploaded without one; the sha256 check does not depend on it.
// Google Cloud Storage is gs://BUCKET/KEY with Application
// Default Credentials; gcsblob takes no endpoint parameter, so an
// emulator is named by STORAGE_EMULATOR_HOST=HOST:PORT instead.
//
// cmd/imagebuild's TestStoreInBucket and TestBuildDiskFromBucket prove
// these URLs through the real s3blob and gcsblob drivers against
// in-process servers of each wire protocol (gofakes3, fake-gcs-server).
// Those servers do not check request signatures, so credentials and
// region are not proven against AWS, MinIO or Google Cloud Storage.
//
// # The guest agent binary
//
// initramfs and debootstrap images carry the static agent
// (github.com/endpointkit/endpointkit/imagebuild/agent/cmd/ekagent). The
// builder takes, in order: [Options].AgentBinary; the recipe's agent:
// path; else it runs `go build` (CGO_ENABLED=0, -trimpath) of that package
// in [Options].GoDir (default: the working directory) — inside the
// endpointkit module, or inside any module that requires it (go.sum then
// already lists the agent's dependencies) — and caches the binary by the
// hash of the agent's sources, go.mod, go.sum and the Go version.
//
// # Output
//
// An image directory (see package vmimage): manifest.json with sha256 of
// every artefact, the Antidote image.meta.yaml, the artefacts (vmlinux,
// initramfs.cpio or initrd.cpio, disk.qcow2, seed.iso) and a generated
// Dockerfile and Makefile (build, push, nightly; IMAGE and TAG variables)
// whose image runs `endpoint run --image /image`. [WriteContainerFiles]
// regenerates the latter two.
//
// # NIC layout and guest interface names
//
// nics: ([RecipeNICs]) says where the guest's NICs sit on its root PCI bus
// — the management NIC's slot and function, and the data NICs (the
// lesson's links, the container's eth1, eth2, …) one per slot or as the
// functions of consecutive slots, as NRE Labs' frr and cvx images and
// vrnetlab lay them out — and, with networkInterfaces and
// nics.managementName (or nics.naming: path, systemd's enp0sSfF names),
// what the guest calls them. The manifest records the layout
// ([vmimage.NICLayout]); the launcher places each NIC there and refuses a
// lesson cabling more links than the layout holds. The image makes the
// names true by PCI address, so they hold for every instance and for a NIC
// added later: a debootstrap image gets a systemd .link file per renamed
// NIC (10-endpointkit-NAME.link, Path=pci-0000:00:SS.F), the tiny agent
// renames each NIC as it appears; the management NIC's name is the one its
// DHCP client, ifupdown's interfaces file and the readiness marker use. A
// disk image's names are declarative: its own OS names its NICs. Default:
// the management NIC in slot 2, the data NICs in slots 3-26, named eth0,
// eth1, … by the kernel.
//
// # Kernel command line and readiness
//
// The manifest's cmdline is complete but for endpointkit.hostname=NAME,
// which the launcher appends (the agent, or the stage-one init for
// debootstrap images, sets the hostname from it). Both kinds print a line
// matching [agent.ReadyRegex] ("endpointkit: ready hostname=… addr=…") on
// the serial console once SSH listens and eth0 has its lease; the launcher
// must still complete an SSH handshake (QEMU user networking accepts TCP
// before the guest listens). QMP system_powerdown (ACPI power button)
// shuts either kind down cleanly.
//
// # Cache
//
// [Builder.BuildCached] content-addresses images by the resolved recipe,
// the sha256 of every input (kernel package, busybox, agent, copied files,
// vendor disk) and a fingerprint of what the builders write; an unchanged
// rebuild is a cache hit. [Builder.Build] then places the image in an
// output directory: built beside it and swapped in atomically, so a failed
// build never leaves a partial image and the previous image stays until
// the new one is complete. Options.NoCache forces a rebuild (downloads are
// still reused). A debootstrap image's key does not follow the mirror: use
// NoCache to pick up new Debian packages.
//
// # Container images
//
// [Builder.BuildOCI] turns an image directory into an OCI container image
// (layout in DIR/oci) without a Docker engine: a QEMU runtime layer shared
// by every endpoint image (composed from the exact Debian packages apt
// resolves), the static endpoint launcher, and the VM artefacts under
// /image; the config runs `endpoint run --image /image` and carries the
// image's ports, APIs and users as labels ([SpecFor], also the source of the
// generated Dockerfile's ENV, LABEL, EXPOSE and ENTRYPOINT). Layers are
// reproducible and cached by their inputs; the runtime is boot-checked with
// its own QEMU. [Push] sends the image to a registry (blobs the registry
// has are not sent again), [Export] writes it as one tar for `ctr images
// import` or `docker load`, [LoadOCI] reads a layout back. See docs/oci.md.
package imagebuild
