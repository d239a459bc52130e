#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a short while and fails if any of them crashes.
#
#   FUZZ_SECONDS=20      how long each target runs (libFuzzer -max_total_time)
#   FUZZ_TOOLCHAIN=auto  nightly | stable | auto (nightly when `cargo +nightly` works). stable
#                        builds with RUSTC_BOOTSTRAP=1, since cargo-fuzz needs -Z flags.
#   FUZZ_SANITIZER=      address | none | ...; unset: address, falling back to none if the
#                        AddressSanitizer build fails with this toolchain.
#   CARGO_BUILD_JOBS=1   build parallelism (default 1: the machines have 2 cores).
#
# Prints one line per target with the number of executions. New corpus entries go to
# fuzz/corpus/<target> (gitignored); fuzz/seeds/<target> is read as well. Crash reproducers land
# in fuzz/artifacts/<target>; the full log of each target is in fuzz/target/fuzz-smoke/.
set -euo pipefail

seconds="${FUZZ_SECONDS:-20}"
toolchain="${FUZZ_TOOLCHAIN:-auto}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
targets=(packet_decoder handshake_server handshake_client sentinel_session)

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

if [[ "$toolchain" == auto ]]; then
    if cargo +nightly --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
case "$toolchain" in
    nightly) fuzz=(cargo +nightly fuzz) ;;
    # cargo-fuzz passes -Zsanitizer and other unstable flags; RUSTC_BOOTSTRAP lets stable take them.
    stable) fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz) ;;
    *) echo "fuzz-smoke: FUZZ_TOOLCHAIN must be nightly, stable or auto, not '$toolchain'" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

logs=target/fuzz-smoke
mkdir -p "$logs"

# Build all targets once. AddressSanitizer is cargo-fuzz's default and builds with both nightly
# and stable + RUSTC_BOOTSTRAP here (the ASan runtime ships with the x86_64 Linux std), but if a
# toolchain cannot link it we still want the smoke run, uninstrumented for memory errors: the
# library forbids unsafe code, so ASan only watches its dependencies' unsafe code anyway.
if [[ -n "${FUZZ_SANITIZER:-}" ]]; then
    sanitizer="$FUZZ_SANITIZER"
    "${fuzz[@]}" build --sanitizer "$sanitizer"
else
    sanitizer=address
    if ! "${fuzz[@]}" build --sanitizer address 2>"$logs/build-asan.log"; then
        tail -n 20 "$logs/build-asan.log" >&2
        echo "fuzz-smoke: AddressSanitizer build failed with $toolchain; using --sanitizer none" >&2
        sanitizer=none
        "${fuzz[@]}" build --sanitizer none
    fi
fi
echo "fuzz-smoke: toolchain $toolchain, sanitizer $sanitizer, ${seconds}s per target"

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    log="$logs/$target.log"
    status=0
    "${fuzz[@]}" run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    # libFuzzer ends a clean run with "Done N runs in S second(s)" after "#N DONE ..."; after a
    # crash only -print_final_stats's "stat::number_of_executed_units: N" says how many ran.
    runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
    if [[ -z "$runs" ]]; then
        runs="$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)"
    fi
    if [[ -z "$runs" ]]; then
        runs="$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*\([0-9]*\).*/\1/p' "$log" |
            tail -n 1)"
    fi
    if [[ "$status" -eq 0 ]]; then
        printf '%-18s ok       %s runs in %ss\n' "$target" "${runs:-?}" "$seconds"
    else
        printf '%-18s FAILED   exit %s after %s runs (log: fuzz/%s)\n' \
            "$target" "$status" "${runs:-?}" "$log"
        {
            grep -E -A4 'panicked at|ERROR: (Address|Leak)Sanitizer' "$log" | head -n 30
            grep -E 'ERROR: libFuzzer|ALARM: working on the last Unit' "$log"
            grep -E -A2 'Failing input:|Reproduce with:' "$log"
        } >&2 || true
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz-smoke: crashed: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
    exit 1
fi
