# pg_major.sh (sourced): FT_PG_MAJOR, the PostgreSQL major ft_orders is
# built and tested against: the environment's, else the one Debian ships in
# this release (Debian 12: 15, Debian 13: 17), else 15.  Scripts derive
# their default PG_CONFIG and FT_PG_BIN (/usr/lib/postgresql/MAJOR/bin)
# from it.
if [ -z "${FT_PG_MAJOR:-}" ]; then
	case $(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-}") in
		13) FT_PG_MAJOR=17 ;;
		*) FT_PG_MAJOR=15 ;;
	esac
fi
export FT_PG_MAJOR
