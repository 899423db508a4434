#!/bin/bash
# Draws the benchmark plots (SVG) into Docs/plots from the reports the
# benchmarks wrote: the pauses of bench/upgrade.sh and bench/upgrade-scaling.sh
# (Docs/benchmarks-upgrade.md), the stalls per event of bench/systemd.sh
# (Docs/benchmarks-restart.md) and the side-by-side ratios of bench/run.sh
# (Docs/benchmarks.md). `make bench` runs it last; `make plots` redraws from
# the reports in the tree. Needs gnuplot (Debian: gnuplot-nox).
#
#   bench/plot.sh [DOCS_DIR]
set -eu
docs=${1:-Docs}
out=$docs/plots
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Runs gnuplot in the data folder, so that the SVGs name the data files
# without a temporary path.
plot() { (cd "$data" && gnuplot); }

# The lines of the first ``` block after the line of $1 that starts with $2.
block() {
    awk -v start="$2" 'index($0, start) == 1 { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        inside' "$1"
}
# The rows of the first markdown table after the line of $1 that starts with $2.
table() {
    awk -v start="$2" 'index($0, start) == 1 { found = 1; next }
        found && /^\|/ { seen = 1; if ($0 !~ /^\|[-:| ]*$/) print; next }
        seen { exit }' "$1" | tail -n +2
}

terminal='set terminal svg size 760,380 dynamic font "Helvetica,12" background rgb "white"'

# 1. Upgrade pauses under load: the share of upgrades that paused at most x.
block "$docs/benchmarks-upgrade.md" "Every pause" | tr -s ' ' '\n' | grep . | sort -n >"$data/pauses"
n=$(wc -l <"$data/pauses")
[ "$n" -gt 0 ] || { echo "bench/plot.sh: no pauses in $docs/benchmarks-upgrade.md"; exit 1; }
awk -v n="$n" '{ print $1 / 1000, NR / n }' "$data/pauses" >"$data/pauses.cdf"
plot <<EOF
$terminal
set output "$out/upgrade-pauses.svg"
set title "Pause of $n live upgrades under an 8-thread load (bench/upgrade.sh)"
set xlabel "pause (ms): gate closed to gate reopened"
set ylabel "share of upgrades that paused at most this long"
set yrange [0:1]
set xrange [0:*]
set grid
set key off
plot "pauses.cdf" using 1:2 with steps linewidth 2 linecolor rgb "#3c6fb5"
EOF

# 2. The pause against what the kernel holds: table kept in place or copied.
table "$docs/benchmarks-upgrade.md" "| held by the kernel" >"$data/scaling.rows"
awk -F'|' '{ split($3, held, "/"); gsub(/ /, "", held[1]); median = $6 + 0
    file = ($4 ~ /kept/) ? "kept" : "copied"; print held[1], median / 1000 > (dir "/" file) }' dir="$data" "$data/scaling.rows"
plot <<EOF
$terminal
set output "$out/upgrade-pause-vs-held.svg"
set title "Median upgrade pause against the inodes the kernel holds (bench/upgrade-scaling.sh)"
set xlabel "inodes in the host's table at the swap"
set ylabel "median pause (ms)"
set logscale xy
set format x "10^{%L}"
set grid
set key bottom right
plot "kept" using 1:2 with linespoints linewidth 2 pointtype 7 linecolor rgb "#3c6fb5" title "table kept in place (this build)", \
     "copied" using 1:2 with linespoints linewidth 2 pointtype 5 linecolor rgb "#b5483b" title "table copied through the state (earlier builds)"
EOF

# 3. Stalls per event under systemd: the longest system call of the load
#    around each round, one point per round, and each event's median.
kinds="none upgrade restart crash none-100k upgrade-100k restart-100k crash-100k"
grep '^stall ' "$docs/benchmarks-restart.md" >"$data/stall.lines" || { echo "bench/plot.sh: no stall lines in $docs/benchmarks-restart.md"; exit 1; }
awk -v kinds="$kinds" 'BEGIN { n = split(kinds, k, " "); for (i = 1; i <= n; i++) index_of[k[i]] = i - 1 }
    ($2 in index_of) { print index_of[$2], $3 }' "$data/stall.lines" >"$data/stalls"
for kind in $kinds; do
    awk -v kind="$kind" '$2 == kind { print $3 }' "$data/stall.lines" | sort -n \
        | awk -v kind="$kind" '{ v[NR] = $1 } END { if (NR) print kind, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
done | awk '{ print NR - 1, $2, $1 }' >"$data/stall.medians"
plot <<EOF
$terminal
set output "$out/restart-stalls.svg"
set title "Longest system call around each event, under systemd (bench/systemd.sh)"
set ylabel "stall (ms)"
set xrange [-0.6:7.6]
set yrange [0:*]
set xtics rotate by -25 ()
set grid ytics
set key outside top center horizontal
plot "stalls" using (\$1 + (rand(0) - 0.5) * 0.3):2 with points pointtype 7 pointsize 0.6 linecolor rgb "#7a9cc6" title "one round", \
     "stall.medians" using 1:2:xtic(3) with points pointtype 2 pointsize 2.5 linewidth 2 linecolor rgb "#b5483b" title "median"
EOF

# 4. Side-by-side ratios: how many times as fast as each reference xv6 is
#    (the untar is in seconds, so its ratio is turned over).
table "$docs/benchmarks.md" "## Results" | awk -F'|' '{
        gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3)
        pt = $7 + 0; ext = $8 + 0
        if ($3 == "s") { pt = pt ? 1 / pt : 0; ext = ext ? 1 / ext : 0 }
        printf "%d\t%s\t%s\t%s\n", NR - 1, $2, (pt ? pt : "NaN"), (ext ? ext : "NaN") }' >"$data/ratios"
rows=$(wc -l <"$data/ratios")
[ "$rows" -gt 0 ] || { echo "bench/plot.sh: no results table in $docs/benchmarks.md"; exit 1; }
plot <<EOF
$terminal
set terminal svg size 760,460
set output "$out/side-by-side.svg"
set title "xv6 through bento-upgraded against passthrough_ll and ext4 (bench/run.sh)" noenhanced
set ylabel "xv6 speed / the other's (above 1: xv6 faster)"
set logscale y
set yrange [0.05:20]
set xrange [-0.6:$rows - 0.4]
set xtics rotate by -35 noenhanced
set grid ytics
set key outside top center horizontal noenhanced
set style fill solid 0.8 border -1
set datafile separator "\t"
set datafile missing "NaN"
set arrow from graph 0, first 1 to graph 1, first 1 nohead linecolor rgb "#444444" dashtype 2
plot "ratios" using (\$1 - 0.2):(1):(\$1 - 0.38):(\$1 - 0.02):(1):3:xtic(2) with boxxyerror linecolor rgb "#3c6fb5" title "xv6 / passthrough_ll", \
     "ratios" using (\$1 + 0.2):(1):(\$1 + 0.02):(\$1 + 0.38):(1):4 with boxxyerror linecolor rgb "#d08a1a" title "xv6 / ext4"
EOF
echo "bench/plot.sh: wrote $(ls "$out"/*.svg | tr '\n' ' ')"
