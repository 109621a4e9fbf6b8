"""Writes src/countries.tsv, the ISO 3166-1 countries the search filters accept by code or
by English name: alpha-2, alpha-3, then every English name, tab-separated. From the npm
package i18n-iso-countries 7.14.0 (MIT, © widdix GmbH). Run from the repository root:

    curl -sSfL https://registry.npmjs.org/i18n-iso-countries/-/i18n-iso-countries-7.14.0.tgz | tar xz -C /tmp
    python3 scripts/data/make_countries.py /tmp/package
"""
import json
import sys

pkg = sys.argv[1]
codes = json.load(open(f"{pkg}/codes.json"))
names = json.load(open(f"{pkg}/langs/en.json"))["countries"]
with open("src/countries.tsv", "w") as out:
    out.write("# ISO 3166-1 alpha-2, alpha-3, English names; from i18n-iso-countries 7.14.0 (MIT, (c) widdix GmbH)\n")
    for a2, a3, _num, _sub in codes:
        n = names.get(a2)
        if n is None:
            continue
        n = n if isinstance(n, list) else [n]
        out.write("\t".join([a2, a3] + n) + "\n")
