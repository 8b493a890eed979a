# Sourced by the scripts: named steps with their wall time, jobs run in the background beside
# them, and a timing summary at exit, so a step that becomes slow is seen the day it does.
#
#   step "name"                    starts a step (and ends the one before)
#   background "name" cmd args…    runs a command in the background, its output in a log
#   await "name"                   waits for it; on failure prints its log and returns non-zero
#   timing_summary                 prints every step and job with its wall time and result
#
# A step's result is "ok", "FAILED" (`step_failed`: the script went on), or "aborted" (the
# script exited inside it with an error). Call `steps_end` before a deliberate exit.

STEPS_T0=$SECONDS
STEPS_NAMES=()
STEPS_TIMES=()
STEPS_RESULTS=()
STEPS_CURRENT=""
STEPS_CURRENT_T0=0
STEPS_CURRENT_RESULT="ok"
STEPS_BG_DIR=""
declare -A STEPS_BG_PIDS=()

# Formats seconds as m:ss.
steps_clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

steps_end_current() {
  if [ -n "$STEPS_CURRENT" ]; then
    STEPS_NAMES+=("$STEPS_CURRENT")
    STEPS_TIMES+=($((SECONDS - STEPS_CURRENT_T0)))
    STEPS_RESULTS+=("$1")
    STEPS_CURRENT=""
  fi
}

step() {
  steps_end_current "$STEPS_CURRENT_RESULT"
  STEPS_CURRENT="$*"
  STEPS_CURRENT_T0=$SECONDS
  STEPS_CURRENT_RESULT="ok"
  printf '\n== %s\n' "$*"
}

# Marks the current step as failed (the script goes on).
step_failed() { STEPS_CURRENT_RESULT="FAILED"; }

# Ends the current step without starting another (before a deliberate exit).
steps_end() { steps_end_current "$STEPS_CURRENT_RESULT"; }

# A stable file name for a job's name, in the folder `background` made.
steps_job_file() { printf '%s/%s' "$STEPS_BG_DIR" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_')"; }

background() {
  local name="$1"
  shift
  [ -n "$STEPS_BG_DIR" ] || STEPS_BG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/baton-steps.XXXXXX")"
  local file
  file="$(steps_job_file "$name")"
  printf '\n== started in the background: %s\n' "$name"
  (
    start=$SECONDS
    set +e
    "$@" >"$file.log" 2>&1 </dev/null
    code=$?
    printf '%s %s\n' "$code" $((SECONDS - start)) >"$file.done"
  ) &
  STEPS_BG_PIDS["$name"]=$!
}

await() {
  local name="$1" file pid code secs
  file="$(steps_job_file "$name")"
  pid="${STEPS_BG_PIDS[$name]:-}"
  [ -n "$pid" ] || { echo "steps.sh: no background job named '$name'" >&2; return 2; }
  if [ ! -f "$file.done" ]; then
    printf '   (waiting for %s)\n' "$name"
  fi
  wait "$pid" 2>/dev/null || true
  unset "STEPS_BG_PIDS[$name]"
  read -r code secs <"$file.done" || { code=1; secs=0; }
  STEPS_NAMES+=("$name (background)")
  STEPS_TIMES+=("$secs")
  if [ "$code" = 0 ]; then
    STEPS_RESULTS+=("ok")
    return 0
  fi
  STEPS_RESULTS+=("FAILED")
  printf '%s failed (exit %s); its output:\n' "$name" "$code" >&2
  tail -60 "$file.log" >&2
  return 1
}

timing_summary() {
  local exit_code="${1:-0}" i
  # A step still open here is one the script left through an error of its own.
  if [ "$exit_code" = 0 ] || [ "$STEPS_CURRENT_RESULT" != ok ]; then
    steps_end_current "$STEPS_CURRENT_RESULT"
  else
    steps_end_current "aborted"
  fi
  # Jobs nobody awaited (the script stopped early) are stopped, not left running.
  for name in "${!STEPS_BG_PIDS[@]}"; do
    kill "${STEPS_BG_PIDS[$name]}" 2>/dev/null || true
    STEPS_NAMES+=("$name (background)")
    STEPS_TIMES+=(0)
    STEPS_RESULTS+=("stopped")
  done
  printf '\n== timing (wall clock; background jobs ran beside the steps)\n'
  for i in "${!STEPS_NAMES[@]}"; do
    printf '%8s  %-8s %s\n' "$(steps_clock "${STEPS_TIMES[$i]}")" "${STEPS_RESULTS[$i]}" "${STEPS_NAMES[$i]}"
  done
  printf '%8s  %-8s %s\n' "$(steps_clock $((SECONDS - STEPS_T0)))" \
    "$([ "$exit_code" = 0 ] && echo ok || echo FAILED)" "total"
  [ -z "$STEPS_BG_DIR" ] || rm -rf "$STEPS_BG_DIR"
}
