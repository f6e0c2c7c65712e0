#!/usr/bin/env bash
# The hyper-parameter sweep driver as a batch job. The driver itself is small (1 task, 1 CPU); each trial
# is its own multi-node Slurm job, submitted from inside this one.
#
#   sbatch slurm/tune.sh --data DATA_DIR --nodes 2 --tasks-per-node 2 --budget 40 --parallel 4
#   sbatch -J my-sweep -A ACCOUNT -t 2-00:00:00 slurm/tune.sh [python -m hpcdlrm.sweep options]
#
# - Arguments go to `python -m hpcdlrm.sweep` unchanged (train flags for every trial after `--`), plus
#   two defaults when absent (spell these options in full):
#     --out $SLURM_SUBMIT_DIR/sweeps/<job name>   named after the job, NOT its id: resubmitting with the same
#                                                 -J (or --out) resumes the same sweep; trials already run
#                                                 are kept, trials still in Slurm are re-attached;
#     --partition <this job's partition>          unless --partition or --executor is given.
# - Requeue-safe: #SBATCH --requeue, and 5 min before the time limit the script requeues itself
#   (SIGUSR1 -> scontrol requeue), so a sweep longer than the partition's limit goes on; the requeued
#   driver resumes from the same SWEEP_DIR. Set HPCDLRM_REQUEUE_ON_TIMEOUT=0 to just stop instead.
#   (With --time under 5 min the signal comes at once: also pass e.g. --signal=B:USR1@30 then.)
# - Trials do not inherit this job's allocation: the driver runs without the job's SLURM_* variables
#   (kept: SLURM_CONF, SLURM_CLUSTERS; the job id moves to HPCDLRM_DRIVER_JOB_ID), on top of the sweep's
#   own submitit.helpers.clean_env().
#
# #SBATCH lines below are defaults: sbatch command-line options override them.
# Knobs (environment at submission; sbatch exports it to the job):
#   HPCDLRM_HOME        the checkout            (default: the directory above this script as submitted)
#   HPCDLRM_VENV        virtualenv to activate  (default: $HPCDLRM_HOME/.venv when it exists)
#   HPCDLRM_PYTHON      interpreter             (default: python, after the site set-up below)
#   HPCDLRM_SWEEP_DIR   default --out           (default: $SLURM_SUBMIT_DIR/sweeps/<job name>)
#   HPCDLRM_REQUEUE_ON_TIMEOUT  1 = requeue this driver before its time limit (default 1)
#SBATCH --job-name=hpcdlrm-tune
#SBATCH --partition=xeon
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=1-00:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
##SBATCH --account=CHANGE_ME
set -euo pipefail
[[ -n ${SLURM_JOB_ID:-} ]] || { echo "tune.sh is a batch script: sbatch slurm/tune.sh [sweep options]" >&2; exit 2; }

# sbatch runs a copy of this file from its spool directory; the submitted path says where the checkout is.
submitted=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' || true)
HPCDLRM_HOME=${HPCDLRM_HOME:-$(dirname "$(dirname "${submitted:-$SLURM_SUBMIT_DIR/slurm/tune.sh}")")}

# ===================== site set-up: EDIT THIS BLOCK (module loads, venv or conda activation) =====================
# module load python/3.11
HPCDLRM_VENV=${HPCDLRM_VENV:-$HPCDLRM_HOME/.venv}
if [[ -f $HPCDLRM_VENV/bin/activate ]]; then set +u; source "$HPCDLRM_VENV/bin/activate"; set -u; fi
PYTHON=${HPCDLRM_PYTHON:-python}
# ===================== end of site set-up ========================================================================

has_opt() { local opt=$1 a; shift; for a; do [[ $a == "$opt" || $a == "$opt="* ]] && return 0; done; return 1; }
# Sweep options come first; anything after "--" is for train and must stay after it.
args=() train_args=()
while (($#)); do [[ $1 == -- ]] && { train_args=("$@"); break; }; args+=("$1"); shift; done
sweep_dir=${HPCDLRM_SWEEP_DIR:-$SLURM_SUBMIT_DIR/sweeps/$SLURM_JOB_NAME}
has_opt --out "${args[@]}" || args+=(--out "$sweep_dir")
has_opt --partition "${args[@]}" || has_opt --executor "${args[@]}" || args+=(--partition "$SLURM_JOB_PARTITION")
args+=("${train_args[@]}")

job_id=$SLURM_JOB_ID
echo "tune.sh: driver job $job_id (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURMD_NODENAME:-$(hostname -s)};" \
     "$PYTHON -m hpcdlrm.sweep ${args[*]}"

requeue() {
  echo "tune.sh: time limit near, requeueing driver job $job_id (it resumes the same sweep)"
  scontrol requeue "$job_id"
}
[[ ${HPCDLRM_REQUEUE_ON_TIMEOUT:-1} == 1 ]] && trap requeue USR1

# Without this, nested sbatch/srun read the driver's task counts, CPUs and memory as their own defaults.
export HPCDLRM_DRIVER_JOB_ID=$job_id
for var in $(compgen -e | grep '^SLURM_' || true); do
  case $var in SLURM_CONF | SLURM_CLUSTERS) ;; *) unset "$var" ;; esac
done

# In the background so the USR1 trap runs while the driver works (bash defers traps until a command ends).
"$PYTHON" -m hpcdlrm.sweep "${args[@]}" &
driver=$!
rc=0
wait "$driver" || rc=$?
while kill -0 "$driver" 2>/dev/null; do   # wait was interrupted by the trap: keep waiting for the driver
  rc=0
  wait "$driver" || rc=$?
done
exit "$rc"
