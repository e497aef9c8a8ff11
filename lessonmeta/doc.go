// Package lessonmeta reads and validates NRE Labs / Antidote lesson
// metafiles: lesson.meta.yaml (the antidote-core v0.6/v0.7 format, all of
// it), image.meta.yaml, collection.meta.yaml and curriculum.meta.yaml, and
// converts the older Syringe formats to the current one.
//
// # Two layers
//
// [Parse] decodes a file strictly into the Raw types ([RawLesson], …), which
// hold exactly what the file says, and remembers where each field was
// written. [Validate] then applies every rule, fills defaults and returns
// the domain type ([Lesson]) with resolved guide and config paths. [Load]
// does both for a lesson directory; [LoadImage] and [LoadCurriculum] do the
// same for images and whole curricula.
//
// # Problems
//
// Every problem of a file is reported in one pass, each as a [*Problem]
// whose text is `FILE:LINE:COL: FIELD: MESSAGE` and which wraps a category
// sentinel (ErrInvalid, ErrMissing, ErrUnknownKey, …). Several problems come
// back as a [*ValidationError], built with errors.Join, so errors.Is and
// errors.As see every category and problem; [ProblemsOf] lists them, with
// the warnings. Unknown keys are warnings with a "did you mean"
// suggestion, or errors with Options.Strict. Inputs over [MaxFileSize] and
// alias bombs are refused before they cost time or memory; no input makes
// the package panic (it is fuzzed).
//
// # Rules
//
// All of antidote-core's: slug pattern, category / tier / guideType /
// presentation type / configurationType enums, image slug pattern, port
// minimum, at least one stage and one endpoint, unique endpoint names,
// unique presentation names per endpoint, a presentation or an additional
// port per endpoint, connection ends that exist, prerequisites that exist
// in the curriculum, a guide file per stage (stage<i>/guide.md or
// guide.ipynb) and a config file per stage for every configured endpoint.
// And stricter: ports at most 65535, endpoint names that are DNS labels,
// subnets that are CIDRs with room for two addresses, no connection of an
// endpoint to itself, and config files matched exactly, directly in
// stage<i>/configs/, resolved for each stage on its own:
//
//	napalm   <ep>-<driver>.txt  (driver: junos, eos, iosxr, nxos, nxos_ssh, ios)
//	python   <ep>.py
//	ansible  <ep>.yml or <ep>.yaml
//	netconf  <ep>.xml           (endpointkit extension)
//	ssh      <ep>.sh            (endpointkit extension)
//
// # Extensions
//
// endpointkit adds two configuration types Antidote does not have: netconf
// (the file is a NETCONF edit-config payload for the endpoint) and ssh (the
// file is a shell script run on the endpoint over SSH as the image's
// configUser). Lessons using them are not portable to Antidote.
//
// # Connection addresses
//
// A connection may give a subnet. Addresses are then planned as
// antidote-core's host-local IPAM handed them out, pods being created in
// endpoints order: .1 is the gateway and is not used, the end listed first
// in endpoints gets .2 and the other .3 (IPv6: ::2 and ::3). An IPv4 subnet
// must therefore be /29 or larger. Without a subnet the connection gets
// [DefaultSubnet] and no addresses.
//
// # Legacy formats
//
// [Migrate] auto-detects Syringe v0.1 (lessonID, devices / utilities /
// blackboxes, stages keyed by number), v0.3 (stage lists with ids,
// jupyterLabGuide) and v0.4/v0.5 (lessonId, unified endpoints,
// napalm-<driver>) and returns the current form with a report of what was
// mapped, dropped or filled in, and the guide and config files to rename.
//
// # JSON Schema
//
// [Schema] returns a JSON Schema for lesson.meta.yaml generated from
// [RawLesson], for editors.
package lessonmeta
