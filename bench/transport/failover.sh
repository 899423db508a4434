#!/bin/bash
# Does a request survive the death of the process serving it, on each
# transport? This is what bento-upgraded's containment and restarts rely on:
# a new process calls FUSE_NOTIFY_RESEND and the kernel sends again every
# request the dead one had read and not answered.
#
# Usage: failover.sh [ROUNDS] (default 2); needs root and /dev/fuse. Env:
# TRANSPORTS ("classic uring uring-adopt"); LOAD=1 adds a loop of fstats
# from each CPU across the death and the takeover; KILL_AT=SECONDS has the
# script kill the serving child then (with LOAD=1: in the middle of
# requests) instead of the child killing itself on killme. For
# each transport, each round: probe -F mounts; a child process serves and
# dies (SIGKILL) on a LOOKUP of "killme", holding it; the parent waits 2 s,
# writes FUSE_NOTIFY_RESEND and serves. "uring-adopt" is io_uring with
# probe -A: the parent also answers, from buffers it shares with the child,
# the requests the child held on the ring, and sends one request from each
# CPU. Meanwhile a Python client has sent:
#   - the LOOKUP of killme (stat), at 0 s;
#   - an fstat (GETATTR, no directory lock) from each CPU at 0.5 s, while
#     nobody serves;
#   - an fstat from each CPU at 4 s, after the takeover.
# It prints when each call returned. A request the kernel already handed to
# a server is waited for even through SIGKILL, so a call still blocked
# after 10 s is left to the connection's abort (fusectl), which ends it.
# Sets fuse.enable_uring=Y and puts back the value it found; mounts the
# fuse control file system if it is not, and unmounts it at the end.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-2}
work=${WORK:-/tmp/uprobe}; mnt=$work/failover-mnt; bin=$work/bin
mkdir -p "$bin" "$mnt"
gcc -O2 -Wall -pthread -o "$bin/probe" "$here/probe.c" || exit 1
param=/sys/module/fuse/parameters/enable_uring
old=$(cat $param)
connections=/sys/fs/fuse/connections
mounted_ctl=0
if ! mountpoint -q $connections; then
  mount -t fusectl none $connections || exit 1
  mounted_ctl=1
fi
trap 'echo $old > $param; [ $mounted_ctl = 1 ] && umount $connections' EXIT
echo Y > $param

client() {
python3 - "$1" <<'PY'
import errno, os, sys, threading, time
mnt = sys.argv[1]
fds = [os.open(f"{mnt}/f{i}", os.O_RDONLY) for i in range(1, 5)]
t0 = time.time()
def call(what, label, cpu, at):
    time.sleep(at)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        what(); result = "answered"
    except OSError as e:
        result = e.strerror
    # one write per line: threads print at the same moment
    sys.stdout.write(f"  {label}: {result} at {time.time() - t0:.2f} s\n")
    sys.stdout.flush()
calls = []
if os.environ.get("KILL_AT") is None:
    calls.append((lambda: os.stat(f"{mnt}/killme"), "LOOKUP killme (held by the dying server)", None, 0))
for cpu in (0, 1):
    calls.append((lambda fd=fds[cpu]: os.fstat(fd), f"fstat on cpu{cpu} sent at 0.5 s (nobody serving)", cpu, 0.5))
    calls.append((lambda fd=fds[2 + cpu]: os.fstat(fd), f"fstat on cpu{cpu} sent at 4 s (after takeover)", cpu, 4.0))
def load(cpu):
    # LOAD=1: fstat in a loop from each CPU across the death and the
    # takeover, so that requests are in every state when the server dies
    os.sched_setaffinity(0, {cpu})
    fd, n, result = os.open(f"{mnt}/f{5 + cpu}", os.O_RDONLY), 0, "done"
    try:
        while time.time() - t0 < 6:
            os.fstat(fd); n += 1
    except OSError as e:
        result = f"failed with {errno.errorcode[e.errno]}"
    sys.stdout.write(f"  load on cpu{cpu}: {n} fstats, {result} at {time.time() - t0:.2f} s\n")
    sys.stdout.flush()
threads = [threading.Thread(target=call, args=c, daemon=True) for c in calls]
if os.environ.get("LOAD") == "1":
    threads += [threading.Thread(target=load, args=(cpu,), daemon=True) for cpu in (0, 1)]
for t in threads: t.start()
for t in threads: t.join(timeout=max(0.1, 10 - (time.time() - t0)))
blocked = sum(t.is_alive() for t in threads)
print(f"  still blocked after 10 s: {blocked}", flush=True)
os._exit(0)
PY
}

for round in $(seq "$rounds"); do
  for transport in ${TRANSPORTS:-classic uring uring-adopt}; do
    log=$work/failover-$transport-$round.log
    case $transport in
      uring-adopt) args=(-t uring -A) ;;
      *) args=(-t "$transport") ;;
    esac
    "$bin/probe" "${args[@]}" -F -G 2000 -m "$mnt" -n 10 2>"$log" &
    server=$!
    for _ in $(seq 100); do grep -q serving "$log" && break; sleep 0.05; done
    echo "round $round, $transport:"
    connection=$(stat -c %d "$mnt")  # the connection's number is st_dev
    client "$mnt" &
    pid=$!
    if [ -n "${KILL_AT:-}" ]; then
      # the serving child, killed from outside at a moment of its own
      sleep "$KILL_AT"; kill -9 "$(pgrep -P $server -n)"
    fi
    for _ in $(seq 120); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    if kill -0 $pid 2>/dev/null; then
      echo "  the client cannot exit: aborting the connection"
      echo 1 > $connections/$connection/abort
    fi
    wait $pid
    umount -l "$mnt"
    sleep 0.5
    kill -9 $server 2>/dev/null
    wait $server 2>/dev/null
    grep -E "dies|takes over|RESEND|adopts|kicked|kick on" "$log" | sed 's/^/  /'
  done
done
echo "enable_uring restored to $old"
