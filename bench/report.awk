# Turns bench/run.sh's raw results into the comparison table.
#
# Input: lines "KEY|SYSTEM|REP|VALUE" (SYSTEM is xv6, pt or ext4; a failed
# run has VALUE "fail"). Variables: fmt=text|md, reps=N, rows="KEY;LABEL;UNIT;
# DIRECTION|..." in table order (DIRECTION "higher" for rates, "lower" for
# times), meta="KEY KEY ..." (the metadata rows of the goal), untar=KEY.
BEGIN { FS = "|"; nsys = split("xv6 pt ext4", sys, " ") }

{
    n[$1, $2]++
    v[$1, $2, n[$1, $2]] = $4
    run[$1, $2, $3] = $4
}

function median(key, s,    k, m, i, j, t, a) {
    m = 0
    for (i = 1; i <= n[key, s]; i++)
        if (v[key, s, i] != "fail" && v[key, s, i] != "skip") a[++m] = v[key, s, i] + 0
    if (m == 0) return skipped(key, s) ? "skip" : ""
    for (i = 2; i <= m; i++) {            # insertion sort
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (m % 2) return a[(m + 1) / 2]
    return (a[m / 2] + a[m / 2 + 1]) / 2
}

# True if every run of KEY on S was skipped (or none was made).
function skipped(key, s,    i) {
    for (i = 1; i <= n[key, s]; i++) if (v[key, s, i] != "skip") return 0
    return 1
}

function show(x, unit) {
    if (x == "") return "fail"
    if (x == "skip") return "not run"
    if (unit == "s" || unit == "MB/s") return sprintf("%.1f", x)
    return sprintf("%.0f", x)
}

function ratio(a, b) { return (a == "" || b == "" || a == "skip" || b == "skip" || b == 0) ? "" : a / b }
function showratio(r) { return r == "" ? "n/a" : sprintf("%.2f", r) }

END {
    nrows = split(rows, row, "|")
    for (r = 1; r <= nrows; r++) {
        split(row[r], f, ";")
        key[r] = f[1]; label[r] = f[2]; unit[r] = f[3]; dir[r] = f[4]
        for (s = 1; s <= nsys; s++) med[r, sys[s]] = median(key[r], sys[s])
        rpt[r] = ratio(med[r, "xv6"], med[r, "pt"])
        rext[r] = ratio(med[r, "xv6"], med[r, "ext4"])
        better[r] = dir[r] == "higher" ? "> 1: xv6 faster" : "< 1: xv6 faster"
        byKey[key[r]] = r
    }

    if (fmt == "text") {
        line = sprintf("%-34s %-8s %12s %14s %12s %9s %9s  %s", "workload", "unit", "xv6/bento",
                       "passthrough_ll", "ext4", "xv6/pt", "xv6/ext4", "ratio")
        print line
        gsub(/./, "-", line); print line
        for (r = 1; r <= nrows; r++)
            printf "%-34s %-8s %12s %14s %12s %9s %9s  %s\n", label[r], unit[r],
                   show(med[r, "xv6"], unit[r]), show(med[r, "pt"], unit[r]), show(med[r, "ext4"], unit[r]),
                   showratio(rpt[r]), showratio(rext[r]), better[r]
    } else {
        print "| workload | unit | xv6 (bento) | passthrough_ll | ext4 | xv6 / passthrough_ll | xv6 / ext4 | ratio means |"
        print "|---|---|---:|---:|---:|---:|---:|---|"
        for (r = 1; r <= nrows; r++)
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label[r], unit[r],
                   show(med[r, "xv6"], unit[r]), show(med[r, "pt"], unit[r]), show(med[r, "ext4"], unit[r]),
                   showratio(rpt[r]), showratio(rext[r]), better[r]
    }

    # The goals.
    nm = split(meta, mk, " "); behind = ""; unknown = 0
    for (i = 1; i <= nm; i++) {
        r = byKey[mk[i]]
        if (rpt[r] == "") unknown = 1
        else if (rpt[r] < 1) behind = behind sprintf("%s%s (%.2f)", behind == "" ? "" : ", ", label[r], rpt[r])
    }
    if (unknown) g1 = "UNKNOWN (not measured, or a run failed)"
    else if (behind == "") g1 = "MET: xv6 is at least as fast as passthrough_ll on every metadata row"
    else g1 = "NOT MET: xv6 is slower than passthrough_ll on " behind
    r = byKey[untar]
    if (rext[r] == "") g2 = "UNKNOWN (not measured, or a run failed)"
    else if (rext[r] <= 2) g2 = sprintf("MET: the untar takes %.2fx ext4's time (goal: at most 2x)", rext[r])
    else g2 = sprintf("NOT MET: the untar takes %.2fx ext4's time (goal: at most 2x)", rext[r])

    if (fmt == "text") {
        print ""
        print "goal 1, metadata at least as fast as passthrough_ll: " g1
        print "goal 2, untar within 2x of ext4: " g2
    } else {
        print ""
        print "## Goals"
        print ""
        print "1. The xv6 mount at least as fast as passthrough_ll on the metadata workloads (create, stat, unlink; 1 and 8 threads): **" g1 "**."
        print "2. The xv6 mount within 2x of ext4 on the untar: **" g2 "**."
        print ""
        print "## Every run"
        print ""
        print "Runs are in the order they were made; the table above shows their median."
        print ""
        hdr = "| workload | system |"; sep = "|---|---|"
        for (i = 1; i <= reps; i++) { hdr = hdr " run " i " |"; sep = sep "---:|" }
        print hdr; print sep
        for (r = 1; r <= nrows; r++)
            for (s = 1; s <= nsys; s++) {
                out = "| " label[r] " (" unit[r] ") | " (sys[s] == "pt" ? "passthrough_ll" : sys[s] == "xv6" ? "xv6 (bento)" : "ext4") " |"
                for (i = 1; i <= reps; i++) {
                    x = run[key[r], sys[s], i]
                    out = out " " (x == "" ? "-" : x == "fail" ? "fail" : x == "skip" ? "not run" : show(x, unit[r])) " |"
                }
                print out
            }
    }
}
