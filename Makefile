# The two commands of the README: `make run` and `make test`. Each installs what it needs itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint docs screenshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

# The protocol peers the tests start (Azurite, cosmosdb-server), from package-lock.json.
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The browser the dashboard's tests drive (tests/ui): Debian's chromium, never a downloaded one. CI runs as root.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update && apt-get install -y chromium

run: $(STAMP)
	$(BIN)/waymark serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine function_app.py tools

# The documentation site (mkdocs.yml, docs/) into site/: strict, so a warning (a broken link or anchor, a page
# left out of the nav) fails the build. The reference pages are generated from the code (tools/docs).
# NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2.0, which is not a warning about this site. No --quiet:
# it drops warnings before strict mode counts them, and the build would pass with broken links.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build

# pytest exits 5 when it collected no test: that is a broken suite here, not a pass.
test: lint docs $(NODE_STAMP) $(CHROMIUM)
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treated as a failure"; exit 1; fi; \
	exit $$rc

# The dashboard's pictures in docs/img/: the browser tests' screenshots (tests/ui/helpers.py names which), copied
# there when asked; review them with `git diff --stat docs/img` before committing.
screenshots: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	WAYMARK_DOCS_SCREENSHOTS=1 $(BIN)/pytest -q tests/ui/test_ui_browser.py

bench: $(STAMP)
	$(BIN)/waymark bench engine

clean:
	rm -rf $(VENV) .waymark .mypy_cache .ruff_cache .pytest_cache site
