# ft_orders: build with PGXS; `make test` and `make demo` do their own set-up.

MODULE_big = ft_orders

EXTENSION_OBJS = \
	extension/ft_orders.o \
	extension/guc.o \
	extension/shmem.o \
	extension/wakeup.o \
	extension/place_order.o \
	extension/orders_read.o \
	extension/dead_letters.o \
	extension/maintenance.o \
	extension/gateway_mode.o \
	extension/drop_database.o \
	extension/status_views.o \
	extension/metrics.o \
	extension/spi_plan.o \
	extension/schema_version.o

BGWORKER_OBJS = \
	bgworker/launcher.o \
	bgworker/payment_worker.o \
	bgworker/worker_job.o \
	bgworker/attempts.o \
	bgworker/worker_stats.o \
	bgworker/worker_xact.o \
	bgworker/outbox_batch.o \
	bgworker/outbox_claim.o \
	bgworker/claim_floor.o \
	bgworker/outbox_record.o \
	bgworker/gateway_http.o \
	bgworker/gateway_token.o \
	bgworker/gateway_reply.o \
	bgworker/gateway_generic.o \
	bgworker/gateway_json.o \
	bgworker/gateway_stripe.o \
	bgworker/gateway_stripe_json.o \
	bgworker/gateway_stripe_reconcile.o \
	bgworker/backoff.o \
	bgworker/circuit.o \
	bgworker/admission.o \
	bgworker/concurrency.o

OBJS = $(EXTENSION_OBJS) $(BGWORKER_OBJS)

EXTENSION = ft_orders
DATA = ft_orders--1.5.sql ft_orders--1.0.sql ft_orders--1.0--1.1.sql ft_orders--1.1--1.2.sql ft_orders--1.2--1.3.sql ft_orders--1.3--1.4.sql ft_orders--1.4--1.5.sql
PGFILEDESC = "ft_orders - fault-tolerant order and payment pipeline"

PG_CPPFLAGS = -I$(srcdir)/extension
# Warnings are errors where this tree is tested (tests/setup/build.sh and
# the chroot runs pass WERROR=1), not in package builds, where a newer
# compiler's new warning must not break the build.
PG_CFLAGS = -Wall
ifdef WERROR
PG_CFLAGS += -Werror
endif
# libcurl >= 7.85 (curl_easy_header, CURLOPT_PROTOCOLS_STR)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
PG_CPPFLAGS += $(CURL_CFLAGS)
SHLIB_LINK = $(CURL_LIBS)

REGRESS = intake idempotency validation views upgrade
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/tests/regress.conf --load-extension=ft_orders
# who waits for whom: isolation specs (specs/*.spec, expected/*.out), on a
# temp instance of their own with no payment worker
ISOLATION = place_order_concurrency webhooks_concurrency
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=$(srcdir)/tests/isolation.conf --load-extension=ft_orders
# single-server scenarios (restarts, standbys, the fake gateway): TAP tests
# in t/*.pl on PostgreSQL::Test::Cluster (IPC::Run: libipc-run-perl); each
# starts its own servers.  tests/regress/run.sh tap runs them alone.
TAP_TESTS = 1

PG_CONFIG ?= $(shell command -v pg_config >/dev/null 2>&1 && echo pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifeq ($(PGXS),)
# No server development files yet: only the set-up targets work.
all install installcheck:
	@echo "PostgreSQL server development files are missing; run 'make deps' (or 'make test')." >&2
	@exit 1
else
include $(PGXS)

# PGXS does not track header dependencies: rebuild everything when a header
# (shared-memory layout, GUC externs) changes.  After the include: srcdir
# is only defined by PGXS (before it, the wildcard matched nothing), and
# "all" stays the default goal (before it, this rule was, so a plain
# "make" built one object).
$(OBJS): $(wildcard $(srcdir)/extension/*.h $(srcdir)/bgworker/*.h)

# A VPATH build (pg_buildext builds each major in build-MAJOR/) writes the
# objects into subfolders that do not exist there yet.
ifdef VPATH
$(shell mkdir -p extension bgworker)
endif
endif

.PHONY: deps test test-pg17 test-pg-upgrade test-packages deb demo fake_gateway bench bench-ab bench-peers fuzz soak soak-memory partition

# what `make test` needs (the test stack); `make demo` and `make deb`
# install only what they need themselves (tests/setup/deps.sh)
deps:
	bash tests/setup/deps.sh

fake_gateway:
	$(MAKE) -C tests/fake_gateway

test:
	bash tests/run_all.sh

# every suite against PostgreSQL 17 in a Debian 13 chroot (root; cached
# under /var/tmp/ft_orders-trixie)
test-pg17:
	bash tests/pg17/run.sh

# pg_upgrade of a working cluster from PostgreSQL 15 to 17, in a Debian 13
# chroot with Debian 12's PostgreSQL 15 beside its 17 (root; shares the
# chroot's base with test-pg17)
test-pg-upgrade:
	bash tests/pg_upgrade/run.sh

# Debian packages for this system's PostgreSQL majors, into build/deb/CODENAME
deb:
	bash tests/packaging/deb.sh

# build the packages for Debian 12 (15) and 13 (17) in chroots, install each
# on a clean system, pay an order, installcheck (root)
test-packages:
	bash tests/packaging/run.sh

demo:
	bash tests/demo.sh

bench:
	bash bench/run.sh

# two commits side by side, interleaved, one instrument (bench/README.md,
# "Side by side"): make bench-ab A=<commit> B=<commit>
bench-ab:
	bash bench/ab.sh $(A) $(B)

# ft_orders side by side with pg-boss, graphile-worker and DBOS (bench/README.md, "Peers")
bench-peers:
	bash bench/peers/run.sh

fuzz:
	bash fuzz/run.sh

soak:
	bash tests/chaos/soak.sh

soak-memory:
	bash tests/chaos/soak_memory.sh

# every partition drill (tests/partition; root: network namespaces)
partition:
	bash tests/partition/run.sh all

clean: clean-ft
clean-ft:
	-$(MAKE) -C tests/fake_gateway clean
	-$(MAKE) -C tests/partition clean
