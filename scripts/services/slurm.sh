# A one-node Slurm for the cluster tests (sourced by scripts/run-tests.sh).
#
# slurm_start: installs Debian's slurmctld, slurmd, slurm-client and munge when
# root and missing (else prints the command), writes a one-node slurm.conf in a
# temporary folder (free ports, this host's CPUs), starts munged (unless one is
# already running), slurmctld and slurmd in the background (no systemd needed),
# waits until the node is idle and exports:
#   SLURM_CONF                  the generated slurm.conf (sbatch, squeue, scancel read it)
#   XMIPP_QC_SLURM_PARTITION    the partition (xmipp_qc/headless.py then writes a Slurm
#                               queue into the tests' Scipion hosts.conf)
#   XMIPP_QC_SLURM_DIR          the temporary folder (logs, jobcomp.log: one line per job)
# slurm_stop: kills the daemons it started, by PID, and removes the folder.
# The daemons run as root (SlurmUser=root), so starting them needs root.

SLURM_SVC_PACKAGES="slurmctld slurmd slurm-client munge"
SLURM_SVC_PIDS=()

_slurm_free_port() {
    "${VENV:-.venv}/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_slurm_pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

_slurm_install() {
    local missing=0 b
    for b in slurmctld slurmd munged sbatch squeue scancel sinfo; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing=1
    done
    [ "$missing" = 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "slurm: installing $SLURM_SVC_PACKAGES" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends $SLURM_SVC_PACKAGES >&2
        return $?
    fi
    echo "slurm: not installed; run: sudo apt-get install --no-install-recommends $SLURM_SVC_PACKAGES" >&2
    return 1
}

_slurm_write_conf() {
    local d=$1 host=$2 cpus ctld_port d_port
    cpus=$(nproc)
    ctld_port=$(_slurm_free_port)
    d_port=$(_slurm_free_port)
    cat >"$d/slurm.conf" <<EOF
ClusterName=xmippqc
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$d/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

_slurm_start_munge() {
    if _slurm_pid_alive "$(cat /run/munge/munged.pid 2>/dev/null)"; then
        return 0  # a running munged (not ours: left alone at stop)
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null)
        chown munge:munge /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged || return 1
    SLURM_SVC_PIDS+=("$(cat /run/munge/munged.pid)")
}

_slurm_wait_idle() {
    local i state
    for ((i = 0; i < 60; i++)); do
        state=$(sinfo -h -o %T 2>/dev/null | head -1)
        case "$state" in idle*) return 0 ;; esac
        sleep 0.5
    done
    echo "slurm: the node did not become idle (state '${state:-none}'); see $SLURM_SVC_DIR/log" >&2
    return 1
}

slurm_start() {
    case ":$PATH:" in  # runuser and the daemons live in sbin, not on every user's PATH
        *:/usr/sbin:*) ;;
        *) export PATH="$PATH:/usr/sbin:/sbin" ;;
    esac
    _slurm_install || return 1
    if [ "$(id -u)" != 0 ]; then
        echo "slurm: starting munged/slurmctld/slurmd needs root (SlurmUser=root)" >&2
        return 1
    fi
    local host
    host=$(hostname -s)
    SLURM_SVC_DIR=$(mktemp -d /tmp/xmipp-qc-slurm.XXXXXX)
    mkdir -p "$SLURM_SVC_DIR/log" "$SLURM_SVC_DIR/state" "$SLURM_SVC_DIR/spool"
    _slurm_write_conf "$SLURM_SVC_DIR" "$host"
    export SLURM_CONF="$SLURM_SVC_DIR/slurm.conf"
    _slurm_start_munge || { echo "slurm: munged did not start" >&2; return 1; }
    /usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$SLURM_SVC_DIR/log/slurmctld.out" 2>&1 &
    SLURM_SVC_PIDS+=("$!")
    /usr/sbin/slurmd -D -f "$SLURM_CONF" -N "$host" >"$SLURM_SVC_DIR/log/slurmd.out" 2>&1 &
    SLURM_SVC_PIDS+=("$!")
    _slurm_wait_idle || return 1
    export XMIPP_QC_SLURM_PARTITION=debug
    export XMIPP_QC_SLURM_DIR="$SLURM_SVC_DIR"
    echo "slurm: one node ($host, $(nproc) CPUs) idle; SLURM_CONF=$SLURM_CONF" >&2
}

slurm_stop() {
    local pid i
    for ((i = ${#SLURM_SVC_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SLURM_SVC_PIDS[i]}
        _slurm_pid_alive "$pid" && kill "$pid" 2>/dev/null
    done
    for pid in "${SLURM_SVC_PIDS[@]}"; do
        for ((i = 0; i < 20; i++)); do _slurm_pid_alive "$pid" || break; sleep 0.25; done
        _slurm_pid_alive "$pid" && kill -9 "$pid" 2>/dev/null
    done
    SLURM_SVC_PIDS=()
    if [ -n "${SLURM_SVC_DIR:-}" ] && [ -z "${XMIPP_QC_KEEP_TESTS:-}" ]; then
        rm -rf "$SLURM_SVC_DIR"
    fi
    unset SLURM_CONF XMIPP_QC_SLURM_PARTITION XMIPP_QC_SLURM_DIR
    return 0
}
