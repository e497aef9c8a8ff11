// Package configure applies a lesson stage's configuration to running
// endpoints ("stage 3" in Antidote's terms): it waits until each endpoint
// answers SSH, then runs the endpoint's configurator for the stage — all
// endpoints in parallel, each with its own deadline, every failure reported
// against the endpoint that had it and none stopping the others.
//
// # Targets
//
// A [Target] is everything needed to reach one endpoint: address, SSH and
// NETCONF ports, user, password ([Secret], which never prints) and/or key
// file, a [HostKeyPolicy] (pinned fingerprints such as an image manifest's
// host keys, a known_hosts file, or an explicit insecure opt-in — host keys
// are verified by default), the lesson directory and the endpoint's
// per-stage [endpoint.StageConfig]. [TargetFor] builds one from an
// [endpoint.Endpoint].
//
// # Methods
//
// One [Configurator] per method, one file each:
//
//   - ssh (extension, stageN/configs/<ep>.sh): the script runs on the
//     target over SSH (bash when present, with per-command exit status and
//     output); [SSHClient] adds Go operations for Linux endpoints: SFTP
//     copies from the lesson directory, hostname, interface addresses,
//     service restarts.
//   - netconf (extension, <ep>.xml): hello; with :candidate lock,
//     edit-config, validate (when offered), commit, unlock, and
//     discard-changes on failure; running-only servers are edited directly.
//     rpc-errors come back as [*RPCError] with tag, path and message.
//   - napalm (<ep>-<driver>.txt): junos through NETCONF load-configuration
//     (xml, text or set format; merge, or override when Target.Replace)
//     and commit; other drivers through python napalm when it is installed,
//     else [ErrNeedsNapalm].
//   - ansible (<ep>.yml): ansible-playbook with a generated 0600 inventory
//     (credentials as variables, host-key policy honoured) and the JSON
//     callback; per-task results; [*TaskError] names the failed task.
//   - python (<ep>.py): run in its configs directory with Antidote's
//     environment (ANTIDOTE_TARGET_HOST, ANTIDOTE_TARGET_USERNAME,
//     ANTIDOTE_TARGET_PASSWORD, SYRINGE_TARGET_HOST, plus
//     ANTIDOTE_TARGET_PORT).
//
// # Secrets
//
// Passwords travel only in memory, in files created 0600 in a private
// temporary directory (ansible inventory), through a pipe (sshpass -d), or
// in a child's environment (python, as Antidote did). They never appear on
// a command line, in a log record or in an error: outputs and errors are
// redacted before they are returned.
//
// # Reachability
//
// [WaitReachable] performs real SSH handshakes with backoff; a server that
// rejects authentication is up (antidote-core's rule). Attempts last 5 s,
// the whole wait 600 s by default, both multiplied by
// [ReachOptions].Scale for endpoints running under TCG.
//
// Nothing here needs root. Tests start real sshd, netconfd and
// ansible-playbook peers (internal/peertest) and need root for that.
package configure
