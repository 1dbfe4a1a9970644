#!/usr/bin/env bash
# Mutation testing of one module against the test files that target it (mutmut 3).
#
#   tools/mutation.sh contdepth/solvers/controllers.py                 # tests from the table below
#   tools/mutation.sh contdepth/tree.py tests/test_core_closed_form.py  # or name the test files
#
# The working tree (tracked files, uncommitted changes included) is copied to
# ${MUTATION_DIR:-/tmp/contdepth-mutation}/<module>, so runs of different modules can go side by
# side and nothing is written into the checkout. mutmut writes mutants/ there; the last lines
# printed are the score and the surviving mutants (inspect one with `mutmut show NAME` in that
# directory). Not part of CI: a module takes minutes to an hour; re-run it when the module changes
# and record the result in docs/TESTING.md. Environment: MUTATION_CHILDREN (default 1) worker
# processes; MUTATION_TIMEOUT (default 2) mutmut's timeout_multiplier: a mutant is stopped as a
# timeout after 2 x MUTATION_TIMEOUT x (its tests' clean CPU time + 1 s) (mutmut's default, 15,
# lets a step-size mutant that loops forever run for half an hour); pip install mutmut first.
set -euo pipefail
cd "$(dirname "$0")/.."
module="${1:?usage: tools/mutation.sh contdepth/<module>.py [tests/<file>.py ...]}"
shift
[ -f "$module" ] || { echo "no such module: $module" >&2; exit 2; }

if [ "$#" -gt 0 ]; then
  tests=("$@")
else
  case "$module" in
    contdepth/timetol.py) tests=(tests/test_timetol_contract.py) ;;
    contdepth/tree.py) tests=(tests/test_tree.py tests/test_core_closed_form.py) ;;
    contdepth/terms.py) tests=(tests/test_terms_contract.py tests/test_silent_answers.py tests/test_sde.py tests/test_sde_contract.py) ;;
    contdepth/grid.py) tests=(tests/test_grid_contract.py tests/test_core_grid.py tests/test_core_fields.py) ;;
    contdepth/brownian.py) tests=(tests/test_brownian_contract.py tests/test_brownian_noise.py) ;;
    contdepth/sdesolve.py|contdepth/solvers/stochastic.py) tests=(tests/test_sde_contract.py tests/test_sde.py tests/test_brownian_noise.py tests/test_silent_answers.py) ;;
    contdepth/solvers/controllers.py) tests=(tests/test_controller.py tests/test_controllers_contract.py tests/test_core_closed_form.py tests/test_core_grid.py tests/test_torchdiffeq_port.py) ;;
    contdepth/solvers/tableau.py) tests=(tests/test_tableau_contract.py tests/test_core_order.py) ;;
    contdepth/solvers/rk.py) tests=(tests/test_rk_contract.py tests/test_core_order.py tests/test_core_closed_form.py) ;;
    contdepth/solvers/adams.py) tests=(tests/test_adams_contract.py) ;;
    contdepth/solvers/newton.py) tests=(tests/test_newton_contract.py) ;;
    contdepth/solvers/engine.py) tests=(tests/test_engine_contract.py tests/test_core_closed_form.py tests/test_core_order.py tests/test_core_dopri5.py tests/test_controller.py tests/test_projection.py tests/test_events.py tests/test_adams_unequal_steps.py tests/test_time_grads_interp.py tests/test_core_errors.py tests/test_core_gradients.py) ;;
    contdepth/solvers/base.py) tests=(tests/test_engine_contract.py tests/test_core_closed_form.py tests/test_projection.py) ;;
    contdepth/solvers/events.py) tests=(tests/test_events_contract.py tests/test_events.py) ;;
    contdepth/solvers/multistep.py) tests=(tests/test_multistep_contract.py tests/test_core_multistep.py) ;;
    contdepth/solvers/symplectic.py) tests=(tests/test_symplectic_contract.py tests/test_core_symplectic.py) ;;
    contdepth/solvers/__init__.py) tests=(tests/test_core_errors.py tests/test_user_errors.py) ;;
    contdepth/gradients/fused.py) tests=(tests/test_fused_contract.py tests/test_fused.py tests/test_core_gradients.py tests/test_projection.py) ;;
    contdepth/solvers/hermite.py) tests=(tests/test_hermite_contract.py tests/test_cubic_outputs.py) ;;
    contdepth/gradients/*) tests=(tests/test_core_gradients.py tests/test_gradients_contract.py tests/test_adjoint_outputs.py tests/test_silent_answers.py tests/test_fused.py tests/test_core_symplectic.py) ;;
    *) echo "no default tests for $module: name the test files after it" >&2; exit 2 ;;
  esac
fi

work="${MUTATION_DIR:-/tmp/contdepth-mutation}/$(echo "$module" | tr '/' '_' | sed 's/\.py$//')"
rm -rf "$work"
mkdir -p "$work"
git ls-files -z --cached --others --exclude-standard | grep -zv '^mutants/' | xargs -0 cp --parents -t "$work"
cd "$work"
{
  echo "[mutmut]"
  echo "source_paths = contdepth"
  echo "only_mutate = $module"
  echo "pytest_add_cli_args = -p no:cacheprovider -x -q"
  echo "timeout_multiplier = ${MUTATION_TIMEOUT:-2}"
  printf 'pytest_add_cli_args_test_selection =\n'
  for t in "${tests[@]}"; do printf '    %s\n' "$t"; done
} > setup.cfg
# The copy's pyproject.toml must not shadow setup.cfg's [mutmut] section.
python - <<'PY'
import re, pathlib
p = pathlib.Path("pyproject.toml")
p.write_text(re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", p.read_text()))
PY
export CONTDEPTH_MUTATION=1
mutmut run --max-children "${MUTATION_CHILDREN:-1}" > mutmut-run.log 2>&1 || true
mutmut results --all true > results.txt 2>&1 || true
python - "$module" <<'PY'
import collections, re, sys
status = collections.Counter()
survivors = []
for line in open("results.txt"):
    m = re.match(r"\s*(\S+): (.+)$", line)
    if m:
        status[m.group(2).strip()] += 1
        if m.group(2).strip() == "survived":
            survivors.append(m.group(1))
total = sum(status.values())
killed = status.get("killed", 0) + status.get("timeout", 0)
print(f"{sys.argv[1]}: {killed}/{total} killed ({100 * killed / max(total, 1):.1f} %); " +
      ", ".join(f"{k} {v}" for k, v in sorted(status.items())))
for name in survivors:
    print("  survived:", name)
PY
echo "work dir: $work"
