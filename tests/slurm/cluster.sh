#!/usr/bin/env bash
# A real, throw-away Slurm cluster with two nodes (n1, n2) on THIS host, for tests, CI and local trials.
# Debian 12 packages, run as root; needs no systemd (it starts and stops every daemon itself, by PID).
#
#   tests/slurm/cluster.sh up             install what is missing, start munged, MariaDB + slurmdbd,
#                                         slurmctld, slurmd n1 + n2, wait until both nodes are idle.
#                                         Idempotent; refuses when a running cluster has another config.
#   tests/slurm/cluster.sh down [--purge] cancel all jobs, stop exactly the daemons `up` started, remove the
#                                         /etc/hosts lines and /etc/slurm links it added. --purge also deletes
#                                         the state dir (job ids then restart at 1, accounting is emptied).
#   tests/slurm/cluster.sh status         daemons, nodes, queue; exit 0 only when the cluster is usable.
#
# Knobs (environment):
#   HPCDLRM_SLURM_DIR        state, logs, PID files, generated configs, MariaDB data  (/tmp/hpcdlrm-slurm)
#   HPCDLRM_SLURM_CPUS       CPUs advertised per node (8). Oversubscribed on purpose: a 1-CPU sweep driver
#                            plus two 2-node trials with up to 2 tasks per node must fit at the same time,
#                            or a driver waiting on trials that cannot start deadlocks.
#   HPCDLRM_SLURM_ACCOUNTING 1 = MariaDB + slurmdbd, so `sacct` works (1). submitit asks sacct whether a job
#                            that left no result is dead; without it job.result() on such a job never returns.
#                            0 = no database; a `sacct -c` shim (reads the job-completion log) is written to
#                            $HPCDLRM_SLURM_DIR/bin, which must then come first in PATH.
#   HPCDLRM_SLURM_PORT       base port (17000): slurmctld +0, slurmd n1/n2 +1/+2, slurmdbd +10, MariaDB +11
#   HPCDLRM_SLURM_INSTALL    1 = apt-get install the missing Debian packages (1)
#   HPCDLRM_SLURM_WAIT       seconds to wait for each daemon, and for the nodes to turn idle (60)
set -euo pipefail

DIR="${HPCDLRM_SLURM_DIR:-/tmp/hpcdlrm-slurm}"
CPUS="${HPCDLRM_SLURM_CPUS:-8}"
ACCOUNTING="${HPCDLRM_SLURM_ACCOUNTING:-1}"
PORT="${HPCDLRM_SLURM_PORT:-17000}"
WAIT="${HPCDLRM_SLURM_WAIT:-60}"
NODES=(n1 n2)
TAG="# hpcdlrm-slurm-ci"            # marks the /etc/hosts lines this script adds
CONF="$DIR/etc/slurm.conf"
DBD_CONF="$DIR/etc/slurmdbd.conf"    # slurmdbd looks beside $SLURM_CONF
export SLURM_CONF="$CONF"            # for the daemons; clients find it through the /etc/slurm link
T0=$EPOCHREALTIME

elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[cluster.sh $(elapsed)s] $*"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
need_root() { [[ $EUID == 0 ]] || die "must run as root (it writes /etc/hosts and /etc/slurm, starts daemons)"; }

pid_of() { [[ -s "$DIR/pids/$1.pid" ]] && cat "$DIR/pids/$1.pid"; }

# Start a daemon in the foreground of its own session; $! is then the daemon itself.
spawn() {  # name command...
  local name=$1; shift
  setsid nohup "$@" >"$DIR/log/$name.out" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name.pid"
}

wait_for() {  # description command... : poll every 0.2 s for up to $WAIT s
  local what=$1; shift
  local end=$((SECONDS + WAIT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { echo "cluster.sh: timed out after ${WAIT}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

# ------------------------------------------------------------------------------------------------ install
install_packages() {
  local pkgs=(slurmctld slurmd slurm-client munge) missing=() p
  [[ $ACCOUNTING == 1 ]] && pkgs+=(slurmdbd mariadb-server)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ "${HPCDLRM_SLURM_INSTALL:-1}" == 1 ]] || die "missing packages: ${missing[*]} (HPCDLRM_SLURM_INSTALL=0)"
  local t=$EPOCHREALTIME
  log "apt-get update + install ${missing[*]}"
  # No service starts here: containers ship policy-rc.d (exit 101); on a systemd host the munged that apt
  # starts is reused below, and a foreign slurmctld/slurmd is refused.
  apt-get -q -o DPkg::Lock::Timeout=120 update >"$DIR/log/apt.log" 2>&1 || die "apt-get update failed: $DIR/log/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 \
    "${missing[@]}" >>"$DIR/log/apt.log" 2>&1 || die "apt-get install failed: see $DIR/log/apt.log"
  log "packages installed in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

# ------------------------------------------------------------------------------------------------ configs
node_mem_mb() { awk -v n=${#NODES[@]} '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 / n }' /proc/meminfo; }

slurm_conf() {
  local host; host=$(hostname -s)
  cat <<EOF
# Generated by tests/slurm/cluster.sh: a CI/test cluster of ${#NODES[@]} simulated nodes on host $host.
ClusterName=hpcdlrm
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroup plugins: they need a writable cgroup tree (rare in CI containers) and refuse oversubscribed CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdSpoolDir=$DIR/spool/%n
# Per-node TmpFS: the nodes share one /tmp, where two srun --mpi=pmix steps would collide.
TmpFS=$DIR/tmp/%n
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Accept advertised CPUs beyond the real ones (oversubscription, see HPCDLRM_SLURM_CPUS).
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=60
SlurmdTimeout=60
Waittime=0
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
$(if [[ $ACCOUNTING == 1 ]]; then
    printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n'
    printf 'AccountingStoragePort=%s' $((PORT + 10))
  else
    printf 'AccountingStorageType=accounting_storage/none'
  fi)
NodeName=n[1-${#NODES[@]}] NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 1))-$((PORT + ${#NODES[@]})) CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$(node_mem_mb) State=UNKNOWN
PartitionName=xeon Nodes=n[1-${#NODES[@]}] Default=YES MaxTime=INFINITE State=UP
EOF
}

dbd_conf() {
  cat <<EOF
# Generated by tests/slurm/cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 10))
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 11))
StorageUser=slurm
StoragePass=$(cat "$DIR/etc/db.pass")
StorageLoc=slurm_acct_db
EOF
}

# /etc/slurm/slurm.conf must be ours (a link into $DIR) or absent: never overwrite a site's config.
link_conf() {
  local target=/etc/slurm/slurm.conf
  mkdir -p /etc/slurm
  if [[ -e $target || -L $target ]] && [[ "$(readlink "$target" || true)" != "$CONF" ]]; then
    die "$target exists and was not written by cluster.sh; refusing to replace a site configuration"
  fi
  ln -sfn "$CONF" "$target"
}

add_hosts() {  # the node names, and this host's own name where a bare container cannot resolve it
  local n addr
  for n in "${NODES[@]}" "$(hostname -s)"; do
    addr=$(getent hosts "$n" | awk '{ print $1; exit }' || true)
    if [[ -z $addr ]]; then
      # Append in place (Docker bind-mounts /etc/hosts: a rename would fail). submitit and env.detect()
      # use the first node name as the rendezvous address, so the names must resolve.
      echo "127.0.0.1 $n $TAG" >>/etc/hosts
    elif [[ $addr != 127.* && $addr != ::1 ]]; then
      die "node name $n already resolves to $addr, not this host"
    fi
  done
}

remove_hosts() {
  grep -q -- "$TAG\$" /etc/hosts 2>/dev/null || return 0
  local kept; kept=$(grep -v -- "$TAG\$" /etc/hosts)
  printf '%s\n' "$kept" >/etc/hosts   # rewrite in place, see add_hosts
  log "removed the tagged /etc/hosts lines"
}

# ------------------------------------------------------------------------------------------------ daemons
comm_of() { case $1 in slurmd-*) echo slurmd ;; *) echo "$1" ;; esac; }
alive() {  # name: is the process recorded under this name still running that program? (PIDs get reused)
  local pid; pid=$(pid_of "$1") || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$(comm_of "$1")" ]]
}
daemons() {  # every daemon `up` may start, in start order
  echo munged
  [[ $ACCOUNTING == 1 ]] && echo mariadbd slurmdbd
  echo slurmctld "${NODES[@]/#/slurmd-}"
}

# A slurmctld/slurmd/slurmdbd we did not start (e.g. one systemd started after apt) would fight over
# ports and state: refuse rather than guess.
refuse_foreign() {
  local prog pid ours
  ours=" $(cat "$DIR"/pids/*.pid 2>/dev/null | tr '\n' ' ' || true) "
  for prog in slurmctld slurmd slurmdbd; do
    for pid in $(pgrep -x "$prog" || true); do
      [[ $ours == *" $pid "* ]] || die "a $prog not started by cluster.sh is running (pid $pid); stop it first"
    done
  done
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
start_munge() {
  alive munged && return 0
  if munge_ok; then log "munged: using the one already running"; return 0; fi
  if [[ ! -s /etc/munge/munge.key ]]; then   # Debian's postinst makes one; a pruned image may not have it
    mkdir -p /etc/munge
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge && chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  spawn munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  wait_for munged munge_ok
  log "munged up (pid $(pid_of munged))"
}

DB_SOCK="$DIR/mysql-run/mysqld.sock"
sql() { mariadb --no-defaults --socket="$DB_SOCK" -u root -e "$1"; }
start_db() {  # a private MariaDB: own datadir, socket and port, never the system's database
  alive mariadbd && return 0
  if [[ ! -d $DIR/mysql/mysql ]]; then
    install -d -o mysql -g mysql -m 750 "$DIR/mysql"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed: $DIR/log/mariadb-install.log"
  fi
  install -d -o mysql -g mysql -m 755 "$DIR/mysql-run"
  spawn mariadbd /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" \
    --socket="$DB_SOCK" --pid-file="$DIR/mysql-run/mariadbd.pid" --port=$((PORT + 11)) \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$DIR/log/mariadbd.log" \
    --innodb-lock-wait-timeout=900   # slurmdbd also asks for a 512M+ buffer pool: a warning, moot at this size
  wait_for MariaDB mariadb-admin --no-defaults --socket="$DB_SOCK" ping || { tail "$DIR/log/mariadbd.log"; exit 1; }
  local pw; pw=$(cat "$DIR/etc/db.pass")
  sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
       ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
       GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  log "MariaDB up (pid $(pid_of mariadbd))"
}

start_dbd() {
  alive slurmdbd && return 0
  spawn slurmdbd /usr/sbin/slurmdbd -D
  wait_for slurmdbd sacctmgr -n list cluster || { tail "$DIR/log/slurmdbd.log"; exit 1; }
  sacctmgr -n -P list cluster format=cluster | grep -qx hpcdlrm || sacctmgr -i add cluster hpcdlrm >/dev/null
  log "slurmdbd up (pid $(pid_of slurmdbd))"
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
start_ctld() {
  alive slurmctld && return 0
  spawn slurmctld /usr/sbin/slurmctld -D -i   # -i: tolerate unreadable state left by a killed run
  wait_for slurmctld ctld_up || { tail -20 "$DIR/log/slurmctld.log"; exit 1; }
  log "slurmctld up (pid $(pid_of slurmctld))"
}

start_slurmd() {  # node
  alive "slurmd-$1" && return 0
  mkdir -p "$DIR/spool/$1" "$DIR/tmp/$1"
  spawn "slurmd-$1" /usr/sbin/slurmd -D -N "$1"
  log "slurmd $1 started (pid $(pid_of "slurmd-$1"))"
}

# Usable = every node answers and is idle, or busy with jobs that survived an earlier `up`.
nodes_usable() {
  local states; states=$(sinfo -h -N -p xeon -o '%t' 2>/dev/null) || return 1
  [[ $(grep -cxE 'idle|mix|alloc|comp' <<<"$states") == "${#NODES[@]}" ]]
}

stop_group() {  # names...: SIGTERM all at once, wait up to 15 s, then SIGKILL what is left
  local name pid pids=() names=()
  for name in "$@"; do
    if alive "$name"; then pid=$(pid_of "$name"); pids+=("$pid"); names+=("$name"); kill -TERM "$pid"; fi
  done
  local end=$((SECONDS + 15)) i any
  while ((SECONDS < end)); do
    any=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && any=1; done
    ((any)) || break
    sleep 0.2
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    log "stopped ${names[$i]} (pid ${pids[$i]})"
  done
  for name in "$@"; do rm -f "$DIR/pids/$name.pid"; done
}

# ------------------------------------------------------------------------------------------------ commands
write_configs() {
  local new_conf new_dbd=""
  [[ -s $DIR/etc/db.pass ]] || (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/etc/db.pass")
  new_conf=$(slurm_conf)
  [[ $ACCOUNTING == 1 ]] && new_dbd=$(dbd_conf)
  if [[ "$new_conf" != "$(cat "$CONF" 2>/dev/null)" || "$new_dbd" != "$(cat "$DBD_CONF" 2>/dev/null)" ]]; then
    local name
    for name in $(daemons); do
      [[ $name == munged || $name == mariadbd ]] && continue
      # Node count, ports and CPUs cannot change under a running slurmctld (it exits on reconfigure).
      alive "$name" && { diff <(cat "$CONF" 2>/dev/null) <(echo "$new_conf") >&2 || true
        die "the running cluster ($name, pid $(pid_of "$name")) has another configuration; run '$0 down' first"; }
    done
    echo "$new_conf" >"$CONF" && chmod 644 "$CONF"
    if [[ $ACCOUNTING == 1 ]]; then
      (umask 077 && echo "$new_dbd" >"$DBD_CONF")   # slurmdbd refuses a readable config (it holds a password)
    else
      rm -f "$DBD_CONF"
    fi
  fi
  link_conf
}

cmd_up() {
  need_root
  mkdir -p "$DIR"/{etc,pids,log,state,run,spool,tmp,bin} && chmod 755 "$DIR"
  install_packages
  refuse_foreign
  write_configs
  add_hosts
  start_munge
  if [[ $ACCOUNTING == 1 ]]; then start_db; start_dbd; fi
  start_ctld
  local n
  for n in "${NODES[@]}"; do start_slurmd "$n"; done
  if ! wait_for "nodes ${NODES[*]} to be idle" nodes_usable; then
    sinfo -N -o '%N %t %E' >&2 || true
    tail -n 5 "$DIR"/log/slurmd-*.log >&2 || true
    exit 1
  fi
  if [[ $ACCOUNTING != 1 ]]; then
    printf '#!/bin/sh\n# no slurmdbd: answer from the job-completion log\nexec /usr/bin/sacct -c "$@"\n' >"$DIR/bin/sacct"
    chmod 755 "$DIR/bin/sacct"
    log "no accounting: put $DIR/bin first in PATH so submitit's sacct calls work"
  fi
  sinfo -N -o '%N %P %t %c %m'
  log "up took $(elapsed) s (state in $DIR)"
}

cmd_down() {
  need_root
  local purge=0
  case "${1:-}" in --purge) purge=1 ;; "") ;; *) die "down: unknown option $1 (use --purge)" ;; esac
  if alive slurmctld; then
    local ids; ids=$(squeue -h -o %A 2>/dev/null || true)
    # Cancel first: slurmd stopped under a running step leaves its slurmstepd behind.
    # (scancel --state takes one state only, so cancel by id.)
    if [[ -n $ids ]]; then
      log "cancelling jobs: ${ids//$'\n'/ }"
      # shellcheck disable=SC2086 # one argument per job id
      scancel $ids 2>/dev/null || true
      local end=$((SECONDS + 20))
      while [[ -n "$(squeue -h -o %A 2>/dev/null)" ]] && ((SECONDS < end)); do sleep 0.2; done
    fi
  fi
  local started; started=$(ls "$DIR/pids" 2>/dev/null || true)
  [[ -n $started ]] || log "no daemon started by cluster.sh is running"
  if ((purge)); then  # the state is about to go: no order to keep
    stop_group "${NODES[@]/#/slurmd-}" slurmctld slurmdbd mariadbd munged
  else  # slurmdbd outlives slurmctld (which sends it its last records), munged outlives both (authentication)
    stop_group "${NODES[@]/#/slurmd-}" slurmctld
    stop_group slurmdbd
    stop_group mariadbd munged
  fi
  if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$CONF" ]]; then
    rm -f /etc/slurm/slurm.conf   # only our link, never a site's file
  fi
  remove_hosts
  local left; left=$(pgrep -x slurmstepd || true)
  [[ -z $left ]] || log "WARNING: slurmstepd still running (pids ${left//$'\n'/ }); not started by this cluster?"
  if ((purge)); then rm -rf "$DIR" && log "purged $DIR"; fi
  log "down took $(elapsed) s"
}

cmd_status() {
  local name ok=0
  for name in $(daemons); do
    if alive "$name"; then printf '  %-12s running (pid %s)\n' "$name" "$(pid_of "$name")"
    elif [[ $name == munged ]] && munge_ok; then printf '  %-12s running (not started by cluster.sh)\n' "$name"
    else printf '  %-12s not running\n' "$name"; ok=1; fi
  done
  if ctld_up; then
    sinfo -N -o '%N %P %t %c %m' && squeue
    nodes_usable || ok=1
  fi
  return $ok
}

# down/status describe the cluster that is there, whatever the knobs say now.
if [[ ${1:-} != up && -f $CONF ]]; then
  ACCOUNTING=0 && grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF" && ACCOUNTING=1
fi
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down [--purge]|status   (knobs: see the top of this file)" >&2; exit 2 ;;
esac
