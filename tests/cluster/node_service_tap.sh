# node_service_tap.sh: node_tap, the Node.js example's test files run with
# node's test runner, each top-level test one ok/not ok line of the caller's
# TAP stream (tests/lib/tap.sh), the rest diagnostics.  Sourced by
# node_service_lib.sh and tests/integration/browser.sh; needs NS_EXAMPLE
# (the example's folder).

# node_tap FILE: run one test file, translate its TAP into ok/diag lines.
# With NS_PGID_FILE set, node runs in a process group of its own whose id
# is written there, for the caller to end (with the browsers it started).
node_tap()
{
	local file=$1 flag=() line n=0 rc= desc
	# Node 20 needs --test-reporter=tap (its default is "spec"); Node 18.15+
	# knows the flag as well, older 18s print TAP anyway
	node --test-reporter=tap -e '' >/dev/null 2>&1 && flag=(--test-reporter=tap)
	while IFS= read -r line; do
		case "$line" in
			"ok "[0-9]*|"not ok "[0-9]*)
				n=$((n + 1))
				desc=${line#*ok }; desc=${desc#* - }
				if [[ $line == *"# SKIP"* ]]; then
					ok 1 "node $file: $desc (skipped: its environment is missing)"
				elif [[ $line == ok* ]]; then
					ok 0 "node $file: $desc"
				else
					ok 1 "node $file: $desc"
				fi ;;
			"node-exit "*) rc=${line#node-exit } ;;
			"TAP version"*|"") ;;
			"# "*) echo "$line" ;;
			*) echo "# $line" ;;
		esac
	done < <(cd "$NS_EXAMPLE" &&
		if [ -n "${NS_PGID_FILE:-}" ]; then
			# a process group of its own, for the caller to end
			setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$NS_PGID_FILE" node --test "${flag[@]}" "test/$file" 2>&1
		else
			node --test "${flag[@]}" "test/$file" 2>&1
		fi
		echo "node-exit $?")
	[ "$n" -gt 0 ] && [ "${rc:-1}" = 0 ]
	ok $? "node $file: reported $n results, exit status ${rc:-none}"
}

