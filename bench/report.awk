# Turns bench/run.sh's raw results into the comparison table.
#
# Input: lines "KEY|SYSTEM|REP|VALUE" (SYSTEM is xv6, pt or ext4; a failed
# run has VALUE "fail"). Variables: fmt=text|md, reps=N, rows="KEY;LABEL;UNIT;
# DIRECTION|..." in table order (DIRECTION "higher" for rates, "lower" for
# times), meta="KEY KEY ..." (the metadata rows of goal 1). The other goals
# name their rows (create1, stat1, unlink1, create8, untar, rmrf).
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
    if (unit == "s" && x < 1) return sprintf("%.3f", x)  # the rm of one file takes ms
    if (unit == "s" || unit == "MB/s") return sprintf("%.1f", x)
    return sprintf("%.0f", x)
}

# Goals on the xv6 / ext4 ratio of one row: a rate at least, a time at most.
function atLeast(k, rs, bound, text,    r) {
    r = byKey[k]; goal[++ng] = text
    met[ng] = rs[r] == "" ? "UNKNOWN (not measured, or a run failed)" : sprintf("%s: %.2fx", rs[r] >= bound ? "MET" : "NOT MET", rs[r])
}
function atMost(k, bound, text,    r) {
    r = byKey[k]; goal[++ng] = text
    met[ng] = rext[r] == "" ? "UNKNOWN (not measured, or a run failed)" : sprintf("%s: %.2fx", rext[r] <= bound ? "MET" : "NOT MET", rext[r])
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
    ng = 0
    goal[++ng] = "metadata at least as fast as passthrough_ll (create, stat, unlink; 1 and " "8 threads)"; met[ng] = g1
    atLeast("create1", rext, 0.33, "create, 1 thread, at least 0.33x ext4's rate")
    atLeast("stat1", rext, 0.5, "stat, 1 thread, at least 0.5x ext4's rate")
    atLeast("unlink1", rext, 0.33, "unlink, 1 thread, at least 0.33x ext4's rate")
    atMost("untar", 1.5, "untar at most 1.5x ext4's time")
    atMost("rmrf", 2, "rm -rf at most 2x ext4's time")
    r1 = byKey["create1"]; r8 = byKey["create8"]
    scale = ratio(med[r8, "xv6"], med[r1, "xv6"])
    goal[++ng] = "create with 8 threads at least 1.6x the 1-thread rate"
    met[ng] = scale == "" ? "UNKNOWN (not measured, or a run failed)" : sprintf("%s: %.2fx", scale >= 1.6 ? "MET" : "NOT MET", scale)

    if (fmt == "text") {
        print ""
        for (i = 1; i <= ng; i++) print "goal " i ", " goal[i] ": " met[i]
    } else {
        print ""
        print "## Goals"
        print ""
        for (i = 1; i <= ng; i++) print i ". " goal[i] ": **" met[i] "**."
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
