#!/usr/bin/env bash
# meta.sh: META.json (PGXN) is valid against the PGXN meta-spec 1.0.0
# schema (pgxn-meta-1.0.0.schema.json, python3-jsonschema), the schema
# rejects what the spec forbids, and the versions of META.json,
# debian/changelog and ft_orders.control agree.  TAP; run by `make test`
# (suite "packaging").
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/tap.sh"
cd "$ROOT" || exit 2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ft_meta.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# errors FILE: the schema's complaints about a META.json, one per line
# (Debian's python3 and python3-jsonschema)
errors()
{
	/usr/bin/python3 -c '
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
doc = json.load(open(sys.argv[2]))
for e in sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str):
    print("/".join(map(str, e.path)) + ": " + e.message)
' "$HERE/pgxn-meta-1.0.0.schema.json" "$1"
}

# mutated JQ_FILTER: META.json changed by a jq filter, checked
mutated() { jq "$1" META.json >"$TMP/META.json" && errors "$TMP/META.json"; }

out=$(errors META.json 2>&1)
is "$out" "" "META.json is valid PGXN meta-spec 1.0.0"
like "$(mutated 'del(.license)')" "'license' is a required property" "the schema rejects a META.json without a license"
like "$(mutated '.version = "1.2"')" "^version: " "... a version that is not SemVer"
like "$(mutated '.licence = "mit"')" "'licence' does not match" "... an unknown key"
like "$(mutated '.license = "GPL"')" "^license: " "... a license name outside the spec's list"
like "$(mutated '.provides.ft_orders |= del(.file)')" "'file' is a required property" "... an extension in provides without its file"
like "$(mutated '.prereqs.runtime.requires.PostgreSQL = "15"')" "^prereqs/runtime/requires/PostgreSQL: " "... a prereq version that is no version range"

control=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" ft_orders.control)
semver=$control
[[ $semver =~ ^[0-9]+\.[0-9]+$ ]] && semver=$semver.0
is "$(jq -r '.version + " " + .provides.ft_orders.version' META.json)" "$semver $semver" \
	"META.json's version and provides.ft_orders.version are the control file's default_version ($control as SemVer)"
is "$(sed -n '1s/^ft-orders (\([^-)]*\)-[^)]*).*/\1/p' debian/changelog)" "$control" \
	"debian/changelog's upstream version is the control file's default_version"
for f in $(jq -r '.provides[] | .file, .docfile // empty' META.json); do
	[ -f "$f" ]
	ok $? "META.json names $f, which exists"
done
done_testing
