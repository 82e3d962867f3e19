#!/bin/sh
# settings_check.sh CC INCLUDE_DIR — the static assertions of include/sipp_settings.h fail the
# build, with a message that says what to do, when a params struct and its table disagree: a
# field appended to each of the five structs without a row, and a field whose type changed.
set -u
cc=$1 inc=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '#include "sipp_settings.h"\nint main(void) { return 0; }\n' > "$tmp/t.c"
compile() { "$cc" -std=c11 -fsyntax-only -I"$tmp" "$tmp/t.c" > "$tmp/out" 2>&1; }
fresh() { cp "$inc/sipp.h" "$inc/sipp_settings.h" "$tmp/"; }

fresh
compile || { echo "settings_check: the unchanged headers do not compile:"; cat "$tmp/out"; exit 1; }
status=0
for pair in local:LOCAL text:TEXT embed:EMBED provider:PROVIDER gateway:GATEWAY; do
    s=${pair%%:*} table=SIPP_${pair##*:}_SETTINGS
    fresh
    sed -i "s/^} sipp_${s}_params;/    void *appended_without_a_row;\n} sipp_${s}_params;/" "$tmp/sipp.h"
    grep -q appended_without_a_row "$tmp/sipp.h" || { echo "settings_check: no sipp_${s}_params in sipp.h"; exit 1; }
    if compile; then
        echo "settings_check: a field appended to sipp_${s}_params without a row still compiles"
        status=1
    elif ! grep -q "sipp_${s}_params has a field that $table (include/sipp_settings.h) lacks: add its row" "$tmp/out"; then
        echo "settings_check: sipp_${s}_params: the failure does not say what to do:"; cat "$tmp/out"
        status=1
    fi
done
fresh
sed -i 's/^    float top_p;/    double top_p;/' "$tmp/sipp.h"
if compile; then
    echo "settings_check: sipp_text_params.top_p of another type still compiles"; status=1
elif ! grep -q "the row of top_p in the table of sipp_text_params is out of order or of the wrong kind" "$tmp/out"; then
    echo "settings_check: top_p: the failure does not name the row:"; cat "$tmp/out"; status=1
fi
[ $status = 0 ] && echo "settings_check: ok"
exit $status
