// Package endpointkit turns network-automation lessons (the NRE Labs /
// Antidote format) into running, cabled, configured virtual machines.
//
// A lesson is a directory with a lesson.meta.yaml, per-stage guides and
// per-stage configuration files. Each endpoint of a lesson is a VM under QEMU,
// packaged as a container image. endpointkit covers the three stages of making
// and running such images:
//
//  1. Image build (package imagebuild): a base VM image from nothing
//     (an initramfs or debootstrap), from a vendor disk or an installer, with
//     the antidote user, DHCP on the primary interface, SSH/NETCONF/REST
//     enabled; then the container recipe whose entrypoint launches the VM.
//     The result is an image directory described by a vmimage.Manifest.
//  2. Metafile and wiring (packages lessonmeta, endpoint, wiring): read and
//     validate the metafile, derive each endpoint's image, ports and
//     interfaces, and cable the endpoints together as the lesson says.
//  3. Configuration (package configure): hostname, interface addresses,
//     files from the lesson directory, service restarts — over SSH/SFTP,
//     NETCONF, Ansible or a Python script.
//
// Package qemulaunch is the in-container launcher: it finds the container's
// interfaces, stitches TAPs to them, forwards the declared ports into the VM,
// shares the lesson directory over 9p, and runs QEMU under QMP with layered
// readiness and a graceful shutdown.
//
// The binaries in cmd/ (lesson, endpoint, imagebuild) only parse flags and
// call these packages; examples/ holds runnable programs, example lessons and
// image recipes.
package endpointkit
