"""Open 20 SSH sessions at once on one connection, as NRE Labs lesson
scripts do (paramiko's exec_command returns without waiting for the
command), and check every one ran: usage sessions.py HOST PORT USER PASSWORD."""
import sys

import paramiko

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect(host, port, user, password, allow_agent=False, look_for_keys=False, timeout=60)
# All 20 are open before the first ends: each sleeps first.
started = [client.exec_command("sleep 3; echo session %d" % i, timeout=300) for i in range(20)]
for i, (_, stdout, _) in enumerate(started):
    out = stdout.read().decode().strip()
    status = stdout.channel.recv_exit_status()
    if out != "session %d" % i or status != 0:
        sys.exit("session %d: status %d, output %r" % (i, status, out))
client.close()
print("20 sessions at once: ok")
