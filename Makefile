# Mito: a time-series storage engine. `make help` lists the targets.

CARGO ?= cargo
FUZZ_SECONDS ?= 60
CYCLES ?= 50
FUZZ_TARGETS := wal_segment wal_list pk_codec manifest_action sst_info wal_entry line_protocol catalog prom_remote_write pg_bind sst_pages

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: fmt
fmt: ## Format all code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Check formatting (fails on unformatted code)
	$(CARGO) fmt --all -- --check

.PHONY: clippy
clippy: ## Lint the workspace, all targets; warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: dup-check
dup-check: ## Fail if arrow, parquet or datafusion appear in two versions (their types must match)
	@dups=$$($(CARGO) tree --workspace --duplicates --edges normal,build 2>/dev/null | grep -E '^(arrow|parquet|datafusion|object_store)' || true); \
	if [ -n "$$dups" ]; then echo "duplicate versions:"; echo "$$dups"; exit 1; fi; echo "no duplicate arrow/parquet/datafusion versions"

.PHONY: test
test: ## Run every test of the workspace (unit, integration, crash, corpus replays, doc tests)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc

.PHONY: crash
crash: ## Kill `mito write`/`flush`/`compact` with SIGKILL CYCLES times (default 50), cut the engine's power 4*CYCLES times, check every reopen (docs/reliability.md)
	MITO_CRASH_CYCLES=$(CYCLES) $(CARGO) nextest run -p cli --test crash --no-capture -E 'test(killed_writes_always_leave_a_directory_that_opens)'
	MITO_POWER_CUTS=$$(( 4 * $(CYCLES) )) $(CARGO) nextest run -p mito-engine --test power_cut --no-capture

.PHONY: clients
clients: ## `mito server` against real clients: the influx CLI, influxdb-client (Python), Prometheus scrape + remote write (installs them if missing)
	$(CARGO) build --bin mito
	python3 tests-integration/clients/clients.py --mito "$${CARGO_TARGET_DIR:-target}/debug/mito"

.PHONY: bench
bench: ## Run `mito bench` (TSBS cpu-only, report in mito-bench/) and the criterion benchmarks (see docs/benchmarks.md)
	rm -rf mito-bench
	$(CARGO) run --release --bin mito -- bench --out mito-bench
	$(CARGO) bench -p benchmarks

WORKLOAD ?= cpu
.PHONY: peers
peers: ## Mito against InfluxDB, VictoriaMetrics and DuckDB in one run, answers cross-checked (report in mito-peers/; WORKLOAD=iot for the trucks)
	rm -rf mito-peers
	$(CARGO) build --release --bin mito
	python3 benchmarks/peers/peers.py --out mito-peers --workload $(WORKLOAD) --mito "$${CARGO_TARGET_DIR:-target}/release/mito"

.PHONY: doc
doc: ## Build the API docs (warnings are errors)
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

.PHONY: deny
deny: ## Check dependency bans, licenses and sources (installs cargo-deny if missing)
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check bans licenses sources

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZ_SECONDS (nightly; installs cargo-fuzz if missing)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" ./.ci/fuzz