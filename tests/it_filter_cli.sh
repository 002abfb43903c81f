#!/bin/bash
# `autopilot filter test` from the outside: human output, --json, stdin,
# service JSON, configuration defaults, exit codes and error messages.
set -u
BIN=${AP_BIN:-build/autopilot}
DATA=${AP_SRC:-.}/tests/data/filters
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() {	# description, command output, expected substring
	if [[ "$2" != *"$3"* ]]; then
		echo "FAIL: $1: expected '$3' in:"; echo "$2"; fails=$((fails + 1))
	fi
}
code() {	# description, got, want
	if [ "$2" != "$3" ]; then echo "FAIL: $1: exit $2, want $3"; fails=$((fails + 1)); fi
}

out=$("$BIN" filter test --connector Postgres --kind schema information_schema public 2>&1); rc=$?
code "defaults" $rc 0
check "defaults dropped" "$out" "dropped  information_schema  matches exclude '^information_schema\$' (builtin default for Postgres)"
check "defaults kept" "$out" "kept     public  matches no exclude"

# A connector with no built-in defaults is taken, with a warning on stderr
# that suggests the closest built-in name; the exit status is unchanged.
out=$("$BIN" filter test --connector Postgress --kind schema information_schema 2>"$TMP/err"); rc=$?
err=$(cat "$TMP/err")
code "connector typo" $rc 0
check "connector typo still used" "$out" "kept     information_schema  no filter for this kind"
check "connector typo warns" "$err" "autopilot: warning: --connector Postgress: no built-in default filters for connector 'Postgress'; did you mean 'Postgres'?"
"$BIN" filter test --connector postgres --kind schema x >/dev/null 2>"$TMP/err"
code "no warning for a built-in connector" "$(cat "$TMP/err")" ""
# A kind the connector's services do not have: said, the exit status unchanged.
out=$("$BIN" filter test --connector postgres --kind topic x 2>"$TMP/err"); rc=$?
code "kind of another connector" $rc 0
check "kind of another connector warns" "$(cat "$TMP/err")" "autopilot: warning: --kind topic: Postgres is a database connector, whose services are filtered by databaseFilterPattern, schemaFilterPattern and tableFilterPattern only"
"$BIN" filter test --service-json "$DATA/postgres_service.json" --kind dashboard x >/dev/null 2>"$TMP/err"
check "kind of the service's connector warns" "$(cat "$TMP/err")" "--kind dashboard: Postgres is a database connector"
out=$("$BIN" filter test --connector Looker --kind chart x 2>&1); rc=$?
code "connector without defaults" $rc 0
check "connector without defaults warns" "$out" "--connector Looker: no built-in default filters for connector 'Looker' (there are for Postgres"
echo '{"filters": {"defaults": {"byConnector": {"Postgress": {"tableFilterPattern": {"excludes": ["^x"]}}}}}}' > "$TMP/byconn.json"
out=$("$BIN" filter test -c "$TMP/byconn.json" --connector Postgress x1 2>&1); rc=$?
code "byConnector typo" $rc 0
check "byConnector typo applies as written" "$out" "dropped  x1  matches exclude '^x'"
check "byConnector typo warns" "$out" "autopilot: warning: $TMP/byconn.json: filters.defaults.byConnector.Postgress: no built-in default filters for connector 'Postgress'; did you mean 'Postgres'?"

out=$("$BIN" filter test --service-json "$DATA/postgres_service.json" --kind schema \
	sales_eu sales_tmp FINANCE finance_x information_schema 2>&1); rc=$?
code "service" $rc 0
check "service include" "$out" "kept     sales_eu  matches include '^sales' (service), no exclude"
check "service exclude" "$out" "dropped  sales_tmp  matches exclude '.*_tmp\$' (service)"
check "case-insensitive" "$out" "kept     FINANCE  matches include '^finance\$'"
check "no include" "$out" "dropped  finance_x  matches no include"

# A ChangeEvent stands for the entity it carries, an object or a JSON string of one.
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))
json.dump({"eventType": "entityCreated", "entity": json.dumps(e)}, open(sys.argv[2], "w"))' \
	"$DATA/postgres_service.json" "$TMP/event.json"
out=$("$BIN" filter test --service-json "$TMP/event.json" --kind schema sales_tmp 2>&1); rc=$?
code "a ChangeEvent, entity as a string" $rc 0
check "the event's entity's filters" "$out" "dropped  sales_tmp  matches exclude '.*_tmp\$' (service)"

out=$(printf 'orders\nbak_orders\n\n' | "$BIN" filter test --service-json "$DATA/postgres_service.json" --json); rc=$?
code "stdin json" $rc 0
check "json kept" "$out" '{"name":"orders","kept":true,"rule":"no-exclude"}'
check "json dropped" "$out" '{"name":"bak_orders","kept":false,"rule":"exclude","pattern":"^bak_","source":"service"}'
check "json empty" "$out" '{"name":"","kept":false,"rule":"empty"}'
n=$(printf '%s\n' "$out" | wc -l)
code "one line per name" "$n" 3
# CRLF line ends (a names file written on Windows): the \r is not part of the name.
out=$(printf 'information_schema\r\npublic\r\nx\r\r\n' | "$BIN" filter test --connector Postgres --kind schema --json); rc=$?
code "crlf" $rc 0
check "crlf name" "$out" '{"name":"information_schema","kept":false,"rule":"exclude","pattern":"^information_schema$"'
check "crlf kept" "$out" '{"name":"public","kept":true,"rule":"no-exclude"}'
check "crlf one \\r per line" "$out" '{"name":"x\u000d","kept":true'
# Text: control characters in names (and patterns) are written as escapes,
# one line per name, so that no name can rewrite the terminal or add a line.
out=$(printf 'x\ry\nab\033[31mc\n' | "$BIN" filter test --include "$(printf 'a\t|x')"); rc=$?
code "control characters" $rc 0
check "a carriage return escaped" "$out" 'kept     x\ry  matches include '"'"'a\t|x'"'"' (--include), no exclude'
check "an escape escaped" "$out" 'dropped  ab\x1b[31mc  matches no include'
out=$("$BIN" filter test --include a "$(printf 'a\nb')"); rc=$?
check "a line end in an argument escaped" "$out" 'kept     a\nb  matches include'
n=$(printf '%s\n' "$out" | wc -l)
code "one line for a name with a line end" "$n" 1
# -c uses only the filters of the file, and says what else in it serve would refuse.
printf '{"airflow": {"url": "ftp://x"}, "filters": {"builtin_defaults": false}}' > "$TMP/rest.json"
err=$("$BIN" filter test -c "$TMP/rest.json" x 2>&1 >/dev/null); rc=$?
code "an error outside filters" $rc 0
check "is a warning" "$err" "autopilot: warning: $TMP/rest.json: airflow.url"
check "saying what it means" "$err" "(serve, run and config check refuse this configuration; filter test uses only its filters)"
err=$("$BIN" filter test -c "${AP_SRC:-.}/conf/autopilot.example.json" x 2>&1 >/dev/null); rc=$?
code "the example" $rc 0
code "the example warns of nothing" "$(printf '%s' "$err" | wc -c)" 0
err=$("$BIN" filter test --include "$(printf '\033]0;x\007(')" x 2>&1 >/dev/null); rc=$?
code "a refused pattern with control characters" $rc 2
check "its message escapes them" "$err" "invalid pattern '\x1b]0;x\x07(': missing )"

cat > "$TMP/conf.json" <<'J'
{"filters": {"builtin_defaults": false, "defaults": {"byServiceKind": {"database":
  {"tableFilterPattern": {"includes": ["^fact_", "^dim_"], "excludes": [".*_old$"]}}}}}}
J
out=$("$BIN" filter test -c "$TMP/conf.json" --connector Postgres fact_sales dim_x dim_x_old stage 2>&1); rc=$?
code "config" $rc 0
check "config include" "$out" "kept     fact_sales  matches include '^fact_' (configuration defaults for database services)"
check "config exclude" "$out" "dropped  dim_x_old  matches exclude '.*_old\$'"
check "config no include" "$out" "dropped  stage  matches no include"
# $AUTOPILOT_CONFIG names the file when -c does not, as for every command.
out=$(AUTOPILOT_CONFIG="$TMP/conf.json" "$BIN" filter test --connector Postgres dim_x_old 2>&1); rc=$?
code "config from AUTOPILOT_CONFIG" $rc 0
check "config from AUTOPILOT_CONFIG" "$out" "dropped  dim_x_old  matches exclude '.*_old\$'"
out=$(AUTOPILOT_CONFIG="$TMP/nonexistent.json" "$BIN" filter test x 2>&1); rc=$?
code "missing AUTOPILOT_CONFIG" $rc 2
check "missing AUTOPILOT_CONFIG" "$out" "nonexistent.json"
out=$("$BIN" filter test -c "$TMP/conf.json" --include '^st' stage fact_sales 2>&1)
check "cli include replaces config includes" "$out" "kept     stage  matches include '^st' (--include)"
check "cli include replaces config includes 2" "$out" "dropped  fact_sales  matches no include"

out=$("$BIN" filter test --connector Postgres --kind database --no-defaults template1 2>&1)
check "no-defaults" "$out" "kept     template1  no filter for this kind"

out=$("$BIN" filter test --include 'ok' --exclude 'a(b' x 2>&1); rc=$?
code "invalid pattern" $rc 2
check "invalid message" "$out" "tableFilterPattern.excludes[0]: invalid pattern 'a(b': missing ), unterminated subpattern at offset 3 (--exclude)"
out=$("$BIN" filter test --kind schema --include '\p{L}' x 2>&1); rc=$?
code "pcre-only escape" $rc 2
check "pcre-only message" "$out" "schemaFilterPattern.includes[0]: invalid pattern '\\p{L}': bad escape \\p"
out=$("$BIN" filter test --include 'a{70000}' x 2>&1); rc=$?
code "pcre2 error" $rc 2
check "pcre2 message" "$out" "at offset"

# A service's FilterPattern without OpenMetadata's shape is refused, never
# read as no filter; null is no list.
svc() {	# connection.config members -> $TMP/svc.json
	echo "{\"name\": \"pg\", \"serviceType\": \"Postgres\", \"connection\": {\"config\": {$1}}}" > "$TMP/svc.json"
}
svc '"tableFilterPattern": {"includes": "^fact_"}'
out=$("$BIN" filter test --service-json "$TMP/svc.json" orders 2>&1); rc=$?
code "includes not a list" $rc 2
check "includes not a list" "$out" "autopilot: --service-json $TMP/svc.json: connection.config.tableFilterPattern.includes: expected a list of strings, got a string"
svc '"tableFilterPattern": {"includes": ["^fact_", 3]}'
out=$("$BIN" filter test --service-json "$TMP/svc.json" orders 2>&1); rc=$?
code "element not a string" $rc 2
check "element not a string" "$out" "connection.config.tableFilterPattern.includes[1]: expected a string, got a number"
svc '"tableFilterPattern": {"includes": null, "excludes": null}, "schemaFilterPattern": null'
out=$("$BIN" filter test --service-json "$TMP/svc.json" orders 2>&1); rc=$?
code "null lists" $rc 0
check "null lists" "$out" "kept     orders  no filter for this kind"
# A key that looks like a misspelt filter key filters nothing: warned about,
# the exit status unchanged; other keys of connection.config are not.
svc '"tabelFilterPattern": {"excludes": ["^orders$"]}, "hostPort": "db:5432", "classificationFilterPattern": {}'
out=$("$BIN" filter test --service-json "$TMP/svc.json" orders 2>"$TMP/err"); rc=$?
code "misspelt filter key" $rc 0
check "misspelt filter key filters nothing" "$out" "kept     orders  no filter for this kind"
code "misspelt filter key warns" "$(cat "$TMP/err")" "autopilot: warning: --service-json $TMP/svc.json: connection.config.tabelFilterPattern: not a filter key, so it filters nothing (did you mean tableFilterPattern?)"
svc '"TableFilterPattern": {"excludes": ["^orders$"]}, "schemaFilterPatern": {}'
"$BIN" filter test --service-json "$TMP/svc.json" orders >/dev/null 2>"$TMP/err"
code "misspelt filter keys warn" "$(cat "$TMP/err")" "autopilot: warning: --service-json $TMP/svc.json: connection.config.TableFilterPattern: not a filter key, so it filters nothing (did you mean tableFilterPattern?)
autopilot: warning: --service-json $TMP/svc.json: connection.config.schemaFilterPatern: not a filter key, so it filters nothing (did you mean schemaFilterPattern?)"
"$BIN" filter test --service-json "$DATA/postgres_service.json" orders >/dev/null 2>"$TMP/err"
code "no warning for filter keys" "$(cat "$TMP/err")" ""
# Whatever --kind is asked for (table by default): the service's keys are its own.
echo '{"name": "k", "serviceType": "Kafka", "connection": {"config": {"topicFilterPatern": {}}}}' > "$TMP/kafka.json"
"$BIN" filter test --service-json "$TMP/kafka.json" orders >/dev/null 2>"$TMP/err"
check "misspelt key of another kind than --kind" "$(cat "$TMP/err")" "autopilot: warning: --service-json $TMP/kafka.json: connection.config.topicFilterPatern: not a filter key, so it filters nothing (did you mean topicFilterPattern?)"

# At most 1000 patterns per list, each at most 4096 bytes.
svc "\"tableFilterPattern\": {\"includes\": [$(seq -f '"^t%g$"' 1 1001 | paste -sd,)]}"
out=$("$BIN" filter test --service-json "$TMP/svc.json" orders 2>&1); rc=$?
code "service over the limit" $rc 2
check "service over the limit" "$out" "connection.config.tableFilterPattern.includes: 1001 patterns; the limit is 1000 per list"
out=$("$BIN" filter test $(seq -f '--exclude ^t%g$' 1 1001) orders 2>&1); rc=$?
code "--exclude over the limit" $rc 2
check "--exclude over the limit" "$out" "tableFilterPattern.excludes: more than 1000 patterns (--exclude); the limit is 1000 per list"
out=$("$BIN" filter test $(seq -f '--exclude ^t%g$' 1 1000) t1 t1001 2>&1); rc=$?
code "--exclude at the limit" $rc 0
check "--exclude at the limit" "$out" "kept     t1001  matches no exclude"
out=$("$BIN" filter test --include "$(printf 'a%.0s' $(seq 4097))" x 2>&1); rc=$?
code "pattern too long" $rc 2
check "pattern too long" "$out" "tableFilterPattern.includes[0]: pattern of 4097 bytes; the limit is 4096 bytes per pattern (--include)"

# The shipped example configuration, as its own comment suggests: '$' keys
# are comments at every level, and its filters.defaults apply.
EXAMPLE=${AP_SRC:-.}/conf/autopilot.example.json
out=$("$BIN" filter test -c "$EXAMPLE" --connector Postgres --kind schema tmp_x scratch information_schema public 2>&1); rc=$?
code "example config" $rc 0
check "example config exclude" "$out" "dropped  tmp_x  matches exclude '^tmp_.*' (configuration defaults for database services)"
check "example config exclude 2" "$out" "dropped  scratch  matches exclude '^scratch\$'"
check "example config builtin" "$out" "dropped  information_schema  matches exclude '^information_schema\$' (builtin default for Postgres)"
check "example config kept" "$out" "kept     public  matches no exclude"
out=$("$BIN" filter test -c "$EXAMPLE" --connector Postgres pg_temp_3 orders 2>&1); rc=$?
code "example config by connector" $rc 0
check "example config by connector" "$out" "dropped  pg_temp_3  matches exclude '^pg_temp_.*'"
cat > "$TMP/annotated.json" <<'J'
{"$comment": "top", "filters": {"$comment": "f", "defaults": {"$comment": "d",
  "byServiceKind": {"$comment": "k", "database": {"$comment": "db",
    "tableFilterPattern": {"$comment": "t", "excludes": ["^x"]}}}}}}
J
out=$("$BIN" filter test -c "$TMP/annotated.json" x1 y 2>&1); rc=$?
code "comments at every level" $rc 0
check "comments at every level" "$out" "dropped  x1  matches exclude '^x'"
echo '{"filters": {"defaults": {"byServiceKind": {"database": {"tableFilterPatern": {}}}}}}' > "$TMP/typo.json"
out=$("$BIN" filter test -c "$TMP/typo.json" x 2>&1); rc=$?
code "config error" $rc 2
check "config error names the file and key" "$out" "$TMP/typo.json: filters.defaults.byServiceKind.database.tableFilterPatern: unknown filter key"
check "config error lists the kind's keys" "$out" "the keys of database services: databaseFilterPattern, schemaFilterPattern, tableFilterPattern"
echo '{"filters": {"defaults": {"byServiceKind": {"database": {"topicFilterPattern": {}}}}}}' > "$TMP/kind.json"
out=$("$BIN" filter test -c "$TMP/kind.json" x 2>&1); rc=$?
code "key of another kind" $rc 2
check "key of another kind names the path" "$out" "$TMP/kind.json: filters.defaults.byServiceKind.database.topicFilterPattern: not a filter key of database services"
check "key of another kind lists the keys" "$out" "the keys of database services: databaseFilterPattern, schemaFilterPattern, tableFilterPattern"

printf '{"defaults": 3' > "$TMP/bad.json"
out=$("$BIN" filter test -c "$TMP/bad.json" x 2>&1); rc=$?
code "bad config" $rc 2
check "bad config names the file" "$out" "$TMP/bad.json: line 1"
out=$("$BIN" filter test --kind tabel x 2>&1); rc=$?
code "bad kind" $rc 2
check "bad kind message" "$out" "--kind tabel: unknown kind"
out=$("$BIN" filter test --bogus 2>&1); rc=$?
code "bad option" $rc 2
out=$("$BIN" filter test --help 2>&1); rc=$?
code "help" $rc 0
check "help text" "$out" "usage: autopilot filter test"

out=$(printf 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!b\nok\n' | "$BIN" filter test --json --exclude '(a|aa|a?)*(a|aa)*b' 2>&1); rc=$?
code "match limit" $rc 2
check "match limit error" "$out" '"error":'
check "match limit continues" "$out" '{"name":"ok","kept":true,"rule":"no-exclude"}'

# A file that is no service entity (a configuration), or none at all.
echo '{"agents": {"metadata": {"enabled": false}}}' > "$TMP/notsvc.json"
out=$("$BIN" filter test --service-json "$TMP/notsvc.json" x 2>&1); rc=$?
code "not a service" $rc 2
check "not a service" "$out" "autopilot: --service-json $TMP/notsvc.json: not a service entity (it has neither serviceType nor connection)"
out=$("$BIN" filter test --service-json "$TMP/nosuch.json" x 2>&1); rc=$?
code "no such file" $rc 2
check "no such file" "$out" "autopilot: --service-json $TMP/nosuch.json: No such file or directory"

# An invalid pattern of the service is named by its index in the service's
# own list, not in the list merged with the built-in defaults before it.
cat > "$TMP/svc-bad.json" <<'J'
{"id": "x1", "name": "pg", "fullyQualifiedName": "pg", "serviceType": "Postgres",
 "connection": {"config": {"type": "Postgres", "databaseFilterPattern": {"excludes": ["ok", "("]}}}}
J
out=$("$BIN" filter test --service-json "$TMP/svc-bad.json" --kind database x 2>&1); rc=$?
code "service pattern index" $rc 2
check "service pattern index" "$out" "autopilot: --service-json $TMP/svc-bad.json: connection.config.databaseFilterPattern.excludes[1]: invalid pattern '('"
# ... also after an exclude the built-in defaults already have, left out of the merge.
cat > "$TMP/svc-bad2.json" <<'J'
{"id": "x1", "name": "pg", "fullyQualifiedName": "pg", "serviceType": "Postgres",
 "connection": {"config": {"type": "Postgres",
  "schemaFilterPattern": {"excludes": ["^information_schema$", "("]}}}}
J
out=$("$BIN" filter test --service-json "$TMP/svc-bad2.json" --kind schema x 2>&1); rc=$?
code "service pattern index after a duplicate" $rc 2
check "service pattern index after a duplicate" "$out" "schemaFilterPattern.excludes[1]: invalid pattern '('"

# The service's kind, when its event (entityType) or its href tells it,
# decides which byServiceKind patterns apply, as for its deployed agents:
# a metadata service's tables are not filtered as a database's.
cat > "$TMP/kinds.json" <<'J'
{"filters": {"defaults": {"byServiceKind": {
  "metadata": {"tableFilterPattern": {"excludes": ["^md_x"]}},
  "database": {"tableFilterPattern": {"excludes": ["^db_x"]}}}}}}
J
printf '{"eventType": "entityCreated", "entityType": "metadataService", "entity": %s}' \
	"$(cat "${AP_SRC:-.}/tests/data/services/metadataService.Atlas.json")" > "$TMP/atlas-event.json"
out=$("$BIN" filter test -c "$TMP/kinds.json" --service-json "$TMP/atlas-event.json" md_x1 db_x1 2>&1); rc=$?
code "metadata service's kind" $rc 0
check "metadata kind's pattern applies" "$out" "dropped  md_x1  matches exclude '^md_x'"
check "database kind's does not" "$out" "kept     db_x1"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); e["href"]="http://om/api/v1/services/metadataServices/1"; print(json.dumps(e))' \
	"${AP_SRC:-.}/tests/data/services/metadataService.Atlas.json" > "$TMP/atlas-href.json"
out=$("$BIN" filter test -c "$TMP/kinds.json" --service-json "$TMP/atlas-href.json" md_x1 db_x1 2>&1); rc=$?
check "metadata kind by href" "$out" "dropped  md_x1  matches exclude '^md_x'"
check "database kind's not by href" "$out" "kept     db_x1"

# A backreference where case is ignored cannot decide a name holding a pair
# of characters Python compares unlike PCRE2 there (s and U+017F): an error
# for that name. One where case counts, or a condition on a group, decides.
out=$("$BIN" filter test --no-defaults --include '(.)\1' 'sſ' 2>&1); rc=$?
code "backreference, s and long s" $rc 2
check "backreference, s and long s said" "$out" "it has a backreference, and the name holds U+0073 and U+017F"
out=$("$BIN" filter test --no-defaults --include '(?-i:(.)\1)' --include '(a)?(?(1)b|c)' 'sſ' 2>&1); rc=$?
code "case-sensitive backreference, condition" $rc 0
check "case-sensitive backreference, condition decide" "$out" "dropped  sſ  matches no include"

# Standard input is read once: not by -c - and --service-json - both, nor
# by either when the names are to come from it.
out=$(echo '{}' | "$BIN" filter test -c - --service-json - x 2>&1); rc=$?
code "-c - and --service-json -" $rc 2
check "-c - and --service-json - said" "$out" "-c - and --service-json - both read standard input: give one of them a file"
out=$(echo '{}' | "$BIN" filter test -c - 2>&1); rc=$?
code "-c - and names from stdin" $rc 2
check "-c - and names from stdin said" "$out" "-c - reads standard input, where the names are read when none is given"
out=$(echo '{"filters": {}}' | "$BIN" filter test -c - --no-defaults x 2>&1); rc=$?
code "-c - with names given" $rc 0
check "-c - with names given decides" "$out" "kept     x"

# Streams: 200,000 names through stdin.
seq 1 200000 | sed 's/^/t_/' > "$TMP/names"
n=$("$BIN" filter test --json --exclude '^t_1' < "$TMP/names" | grep -c '"kept":false')
code "streamed" "$n" 111111

# A reader that goes away (head -1) is a write that failed: exit 1 with a
# message, not death by SIGPIPE (141), and the rest of the input is not read.
"$BIN" filter test --exclude '^t_1' < "$TMP/names" 2>"$TMP/pipe.err" | head -1 > /dev/null
code "closed pipe exit" "${PIPESTATUS[0]}" 1
check "closed pipe message" "$(cat "$TMP/pipe.err")" "autopilot: filter test: writing standard output failed: Broken pipe"
"$BIN" filter test --exclude '^t_1' < "$TMP/names" > /dev/full 2>"$TMP/full.err"
code "full disk exit" $? 1
check "full disk message" "$(cat "$TMP/full.err")" "writing standard output failed: No space left on device"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "filter CLI: all checks passed"
