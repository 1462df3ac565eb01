# classify_build.sh: the compiler command shared by fuzz/run.sh (libFuzzer
# target) and tests/integration/classify_asan.sh (sanitizer harness).
#
#   source fuzz/classify_build.sh
#   ft_classify_build OUTPUT MAIN.c COMPILER [EXTRA FLAGS...]
#
# Compiles MAIN.c with fuzz/classify_common.c and the unchanged
# bgworker/gateway_reply.c (what every provider shares), gateway_generic.c,
# gateway_stripe.c, gateway_stripe_json.c, gateway_stripe_reconcile.c and
# backoff.c against the server
# headers of $PG_CONFIG, links the frontend libpgcommon, with debug info,
# frame pointers, -Wall -Werror and UBSan findings fatal; the sanitizers
# themselves come with the extra flags.

FT_CLASSIFY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ft_classify_build()
{
	local out=$1 main=$2 cc=$3 pg_config=${PG_CONFIG:-/usr/lib/postgresql/${FT_PG_MAJOR:-15}/bin/pg_config}
	shift 3
	"$cc" -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
		-Wall -Werror "$@" \
		-I"$FT_CLASSIFY_ROOT/fuzz" -I"$FT_CLASSIFY_ROOT/bgworker" -I"$FT_CLASSIFY_ROOT/extension" \
		-I"$("$pg_config" --includedir-server)" \
		"$main" "$FT_CLASSIFY_ROOT/fuzz/classify_common.c" \
		"$FT_CLASSIFY_ROOT/bgworker/gateway_reply.c" "$FT_CLASSIFY_ROOT/bgworker/gateway_generic.c" \
		"$FT_CLASSIFY_ROOT/bgworker/gateway_json.c" \
		"$FT_CLASSIFY_ROOT/bgworker/backoff.c" "$FT_CLASSIFY_ROOT/bgworker/gateway_stripe.c" \
		"$FT_CLASSIFY_ROOT/bgworker/gateway_stripe_json.c" "$FT_CLASSIFY_ROOT/bgworker/gateway_stripe_reconcile.c" \
		-L"$("$pg_config" --pkglibdir)" -lpgcommon -lpgport -lcurl -lcrypto -lm \
		-o "$out"
}
