#!/bin/sh
# Creates the web and db profiles and loads their rules (run once, before
# `docker-compose up`; again after editing a JSON file: `rule update` replaces).
# CALICOCTL: the calicoctl to run (default: calicoctl on the PATH).
set -eu
cd "$(dirname "$0")"
calicoctl=${CALICOCTL:-calicoctl}
for p in web db; do
  $calicoctl profile "$p" rule show >/dev/null 2>&1 || $calicoctl profile add "$p"
  $calicoctl profile "$p" rule update < "profiles/$p.json"
done
