#!/usr/bin/env bash
# Test infrastructure for remote kernels: a key-login sshd on 127.0.0.2 and a single-node Slurm
# (munged + slurmctld + slurmd) with its own config, sockets and ports, all under one state
# directory and stopped by PID.
#
#   scripts/remote-test-env.sh start [ssh|slurm|all]   # prints the state dir; writes $DIR/env
#   scripts/remote-test-env.sh stop
#   scripts/remote-test-env.sh status
#
# $DIR/env holds shell assignments for tests: REMOTE_SSH_HOST/PORT/KEY/BADKEY/KNOWN_HOSTS,
# SLURM_CONF. Ports are picked free at start. Needs root (sshd, slurmd).
# Facts this follows: ../shared/reference/feasibility.md section 5.
set -euo pipefail

DIR="${GANYMEDE_REMOTE_ENV_DIR:-/tmp/ganymede-remote-env}"
SSH_HOST="${GANYMEDE_REMOTE_SSH_HOST:-127.0.0.2}"
# The same sshd also answers on a second address, so placement across two "hosts" can be tested.
SSH_HOST2="${GANYMEDE_REMOTE_SSH_HOST2:-127.0.0.3}"
log() { printf '[remote-env] %s\n' "$*" >&2; }
# munged runs as the munge user and must reach its files: they cannot live under a 0700
# directory such as pytest's tmp dirs, so they get their own directory, named after $DIR.
MUNGE_DIR="/tmp/ganymede-munge-$(printf '%s' "$DIR" | sha256sum | cut -c1-12)"

free_port() {  # $1 = address
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()
PY
}

install_packages() {
    local missing=()
    for pkg in openssh-server openssh-client slurm-wlm munge; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_ssh() {
    local D="$DIR/ssh"
    if running "$D/sshd.pid"; then log "sshd already running"; return; fi
    mkdir -p "$D" /run/sshd; chmod 700 "$D"
    [ -f "$D/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/host_ed25519"
    [ -f "$D/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/client_ed25519"
    [ -f "$D/wrong_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/wrong_ed25519"
    cp "$D/client_ed25519.pub" "$D/authorized_keys"; chmod 600 "$D/authorized_keys"
    local port; port="$(free_port "$SSH_HOST")"
    cat > "$D/sshd_config" <<CONF
ListenAddress $SSH_HOST:$port
ListenAddress $SSH_HOST2:$port
HostKey $D/host_ed25519
PidFile $D/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AuthorizedKeysFile $D/authorized_keys
UsePAM no
StrictModes no
MaxSessions 100
MaxStartups 100:30:200
AllowTcpForwarding yes
CONF
    /usr/sbin/sshd -t -f "$D/sshd_config"
    /usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"
    for _ in $(seq 100); do running "$D/sshd.pid" && break; sleep 0.05; done
    # Host key pinned for clients: no "yes" to unknown hosts.
    printf '[%s]:%s %s\n' "$SSH_HOST" "$port" "$(cut -d' ' -f1,2 "$D/host_ed25519.pub")" > "$D/known_hosts"
    printf '[%s]:%s %s\n' "$SSH_HOST2" "$port" "$(cut -d' ' -f1,2 "$D/host_ed25519.pub")" >> "$D/known_hosts"
    cat > "$DIR/ssh.env" <<ENV
REMOTE_SSH_HOST=$SSH_HOST
REMOTE_SSH_HOST2=$SSH_HOST2
REMOTE_SSH_PORT=$port
REMOTE_SSH_KEY=$D/client_ed25519
REMOTE_SSH_BADKEY=$D/wrong_ed25519
REMOTE_SSH_KNOWN_HOSTS=$D/known_hosts
ENV
    ssh -i "$D/client_ed25519" -p "$port" -o BatchMode=yes -o UserKnownHostsFile="$D/known_hosts" \
        -o StrictHostKeyChecking=yes "root@$SSH_HOST" true
    log "sshd on $SSH_HOST:$port (pid $(cat "$D/sshd.pid"))"
}

start_slurm() {
    local D="$DIR/slurm"
    if running "$D/slurmctld.pid" && running "$D/slurmd.pid"; then log "slurm already running"; return; fi
    local M="$MUNGE_DIR"
    mkdir -p "$D/state" "$D/spool" "$M"
    chown munge:munge "$M"; chmod 700 "$M"
    if [ ! -f "$M/munge.key" ]; then
        dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none
        chown munge:munge "$M/munge.key"; chmod 400 "$M/munge.key"
    fi
    if ! running "$M/munged.pid"; then
        runuser -u munge -- /usr/sbin/munged -f --socket="$M/munge.socket" --key-file="$M/munge.key" \
            --pid-file="$M/munged.pid" --log-file="$M/munged.log" --seed-file="$M/munged.seed"
        for _ in $(seq 100); do running "$M/munged.pid" && break; sleep 0.05; done
    fi
    local host ctl slurmd
    host="$(hostname -s)"
    ctl="$(free_port 127.0.0.1)"; slurmd="$(free_port 127.0.0.1)"
    local cpus mem
    cpus="$(nproc)"; mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat > "$D/slurm.conf" <<CONF
ClusterName=ganymede
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl
SlurmdPort=$slurmd
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_DIR/munge.socket
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
KillWait=5
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
PartitionName=gpu Nodes=ALL Default=NO MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
    # Two fake GPUs (character devices with NVIDIA's major number, nothing behind them: none are
    # attached here), so jobs can ask for --gres=gpu:N and the mapping of resource profiles can be
    # checked with scontrol.
    for i in 0 1; do [ -e "$D/nvidia$i" ] || mknod "$D/nvidia$i" c 195 "$i"; done
    echo "NodeName=$host Name=gpu File=$D/nvidia[0-1]" > "$D/gres.conf"
    export SLURM_CONF="$D/slurm.conf"
    /usr/sbin/slurmctld -f "$SLURM_CONF"
    /usr/sbin/slurmd -f "$SLURM_CONF"
    for _ in $(seq 200); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then break; fi
        sleep 0.1
    done
    sinfo -h -o '%t' | grep -qx 'idle' || { log "slurm node not idle: $(sinfo 2>&1)"; exit 1; }
    echo "SLURM_CONF=$D/slurm.conf" > "$DIR/slurm.env"
    log "slurm up (slurmctld pid $(cat "$D/slurmctld.pid"), slurmd pid $(cat "$D/slurmd.pid"))"
}

stop_pidfile() {
    local f="$1"
    [ -f "$f" ] || return 0
    local pid; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case "${1:-}" in
    start)
        what="${2:-all}"
        mkdir -p "$DIR"; chmod 755 "$DIR"
        install_packages
        case "$what" in ssh) start_ssh ;; slurm) start_slurm ;; all) start_ssh; start_slurm ;; *) echo "start ssh|slurm|all" >&2; exit 2 ;; esac
        cat "$DIR"/*.env > "$DIR/env" 2>/dev/null || true
        echo "$DIR"
        ;;
    stop)
        if [ -f "$DIR/slurm/slurm.conf" ]; then
            SLURM_CONF="$DIR/slurm/slurm.conf" scancel --user=root 2>/dev/null || true
        fi
        stop_pidfile "$DIR/slurm/slurmd.pid"
        stop_pidfile "$DIR/slurm/slurmctld.pid"
        stop_pidfile "$MUNGE_DIR/munged.pid"
        rm -rf "$MUNGE_DIR"
        stop_pidfile "$DIR/ssh/sshd.pid"
        rm -f "$DIR"/*.env "$DIR/env"
        log "stopped"
        ;;
    status)
        for f in "$DIR/ssh/sshd.pid" "$MUNGE_DIR/munged.pid" "$DIR/slurm/slurmctld.pid" "$DIR/slurm/slurmd.pid"; do
            if running "$f"; then echo "$f: running ($(cat "$f"))"; else echo "$f: stopped"; fi
        done
        ;;
    *) echo "usage: $0 start [ssh|slurm|all] | stop | status" >&2; exit 2 ;;
esac
