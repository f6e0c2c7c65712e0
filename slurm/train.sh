#!/usr/bin/env bash
# One multi-node DLRM training run: `srun` starts one rank per Slurm task, each `python -m hpcdlrm.train`.
#
#   sbatch slurm/train.sh --data DATA_DIR [--out RUN_DIR] [train options, see python -m hpcdlrm.train -h]
#   sbatch -p PART -A ACCOUNT -N 8 --ntasks-per-node=2 -t 4:00:00 slurm/train.sh --data DATA_DIR ...
#
# - Arguments go to `python -m hpcdlrm.train` unchanged. Ranks and the rendezvous come from the Slurm step
#   (hpcdlrm.env.detect: SLURM_PROCID, SLURM_STEP_NUM_TASKS, first node of the step, a port from the job id).
# - --out defaults to $SLURM_SUBMIT_DIR/runs/<job name>-<job id>. A requeued job keeps its id, so it
#   resumes from its own checkpoint there; to continue a run in a new job, pass the same --out.
# - 180 s before the time limit Slurm sends SIGUSR1 to every rank (--signal); train then checkpoints and
#   exits with code 4, and this script requeues the job, which resumes from the checkpoint (same job id,
#   same --out). Set HPCDLRM_REQUEUE_ON_TIMEOUT=0 to end the job there instead.
# - Nodes are allocated whole (--exclusive); each rank gets the node's CPUs divided by its ranks per node,
#   and uses that many threads. Two ranks per node (one per socket) is usually best on 2-socket Xeons.
#
# #SBATCH lines below are defaults: sbatch command-line options override them.
# Knobs (environment at submission; sbatch exports it to the job):
#   HPCDLRM_HOME     the checkout            (default: the directory above this script as submitted)
#   HPCDLRM_VENV     virtualenv to activate  (default: $HPCDLRM_HOME/.venv when it exists)
#   HPCDLRM_PYTHON   interpreter             (default: python, after the site set-up below)
#   HPCDLRM_THREADS  threads per rank        (default: CPUs per rank)
#   HPCDLRM_SRUN_MPI srun's --mpi plugin, to train over the site's MPI (--backend auto picks it): pmi2 for
#                    MPICH/Intel MPI, pmix for Open MPI 5 (default: unset, ranks start without PMI and use gloo)
#   HPCDLRM_REQUEUE_ON_TIMEOUT  1 = requeue when training stopped at a checkpoint (default 1)
#SBATCH --job-name=hpcdlrm-train
#SBATCH --partition=xeon
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --time=01:00:00
#SBATCH --signal=USR1@180
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
##SBATCH --account=CHANGE_ME
set -euo pipefail
[[ -n ${SLURM_JOB_ID:-} ]] || { echo "train.sh is a batch script: sbatch slurm/train.sh --data DIR [options]" >&2; exit 2; }

# sbatch runs a copy of this file from its spool directory; the submitted path says where the checkout is.
submitted=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' || true)
HPCDLRM_HOME=${HPCDLRM_HOME:-$(dirname "$(dirname "${submitted:-$SLURM_SUBMIT_DIR/slurm/train.sh}")")}

# ===================== site set-up: EDIT THIS BLOCK (module loads, venv or conda activation) =====================
# module load python/3.11
HPCDLRM_VENV=${HPCDLRM_VENV:-$HPCDLRM_HOME/.venv}
if [[ -f $HPCDLRM_VENV/bin/activate ]]; then set +u; source "$HPCDLRM_VENV/bin/activate"; set -u; fi
PYTHON=${HPCDLRM_PYTHON:-python}
# ===================== end of site set-up ========================================================================

has_opt() { local opt=$1 a; shift; for a; do [[ $a == "$opt" || $a == "$opt="* ]] && return 0; done; return 1; }
args=("$@")
has_opt --out "${args[@]}" || args+=(--out "$SLURM_SUBMIT_DIR/runs/$SLURM_JOB_NAME-$SLURM_JOB_ID")

# Ranks on this node: SLURM_TASKS_PER_NODE looks like "2(x4)"; CPUs per rank: what was asked, or a fair share.
ranks_here=${SLURM_TASKS_PER_NODE%%[(,]*}
cpus=${SLURM_CPUS_PER_TASK:-$((SLURM_CPUS_ON_NODE / ranks_here))}
export OMP_NUM_THREADS=${HPCDLRM_THREADS:-$cpus}
has_opt --threads "${args[@]}" || args+=(--threads "$OMP_NUM_THREADS")  # train's own default sees all cores

echo "train.sh: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST," \
     "$ranks_here rank(s)/node x $cpus CPU(s), OMP_NUM_THREADS=$OMP_NUM_THREADS; $PYTHON -m hpcdlrm.train ${args[*]}"
# --kill-on-bad-exit: one dead rank ends the step, instead of its peers waiting in a collective forever.
# --mpi: ranks started through PMI can use the site's MPI for the collectives (--backend auto picks it).
mpi=(); [[ -n ${HPCDLRM_SRUN_MPI:-} ]] && mpi=(--mpi="$HPCDLRM_SRUN_MPI")
rc=0
srun --kill-on-bad-exit=1 "${mpi[@]}" --cpus-per-task="$cpus" "$PYTHON" -m hpcdlrm.train "${args[@]}" || rc=$?
if [[ $rc == 4 && ${HPCDLRM_REQUEUE_ON_TIMEOUT:-1} == 1 ]]; then  # 4: stopped by a signal after a checkpoint
  echo "train.sh: training stopped at a checkpoint (time limit or preemption): requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit "$rc"
