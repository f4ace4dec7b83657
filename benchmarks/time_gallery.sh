#!/usr/bin/env bash
# Wall time of every gallery example in its default mode, one after another, in a fresh
# encoder cache; then a second pass over the same cache (encoders and embeddings reused).
#
# Run from the repository root, on an idle machine (the times in examples/README.rst):
#
#   bash benchmarks/time_gallery.sh [OUTDIR]
#
# OUTDIR (default: a new temporary folder) receives the examples' output, the encoder cache
# (OUTDIR/encoder-cache, deleted first), each run's log and times.tsv. Every ANATCL_*
# variable is unset for the runs, as a reader runs them; the examples draw with Agg.
set -uo pipefail
out=${1:-$(mktemp -d -t anatcl-gallery.XXXXXX)}
mkdir -p "$out"
rm -rf "$out/encoder-cache"
order=(plot_quickstart plot_pretraining_openbhb plot_alzheimer plot_psychiatry plot_phenotypes
       plot_anatomical_features plot_grid_search plot_pretrained_weights plot_from_your_pipeline
       plot_brain_age)
for var in $(env | grep -o '^ANATCL_[A-Z0-9_]*'); do unset "$var"; done
export ANATCL_EXAMPLES_OUTPUT="$out" MPLBACKEND=Agg
printf 'pass\texample\twall_s\tcpu_s\trc\n' > "$out/times.tsv"
for pass in 1 2; do
    for ex in "${order[@]}"; do
        start=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$out/$ex.$pass.cpu" \
            python "examples/$ex.py" > "$out/$ex.$pass.log" 2>&1
        rc=$?
        wall=$(echo "$(date +%s.%N) - $start" | bc)
        cpu=$(awk '{print $1 + $2}' "$out/$ex.$pass.cpu" 2>/dev/null || echo nan)
        printf '%s\t%s\t%.0f\t%.0f\t%s\n' "$pass" "$ex" "$wall" "$cpu" "$rc" >> "$out/times.tsv"
        printf 'pass %s  %-28s %6.0f s wall  %6.0f s CPU  rc=%s\n' "$pass" "$ex" "$wall" "$cpu" "$rc"
    done
done
awk -F'\t' 'NR > 1 { total[$1] += $3 } END {
    for (p in total) printf "pass %s: %.1f min in all\n", p, total[p] / 60 }' "$out/times.tsv"
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 idle cores: below 0.5 before the runs)"
echo "Logs and times.tsv in $out"
