#!/usr/bin/env python3
"""check_includes.py: fails when a module includes a header the layering rules refuse.

    check_includes.py [ROOT]         check the tree at ROOT (default: the repository)
    check_includes.py --self-test    check that violations of each kind are caught

The rules are data (rules.toml beside this script): which directories form each module, which
modules it may use, which third-party headers only some modules may include, and the explicit
exceptions with their reasons. Every #include of every C/C++ file of a module is resolved the
way the compiler would (the including file's directory, include/, src/, the module's extra
search directories) and judged by the module that owns the resolved file, or by the external
table when it resolves to none.
"""
import os
import re
import sys
import tempfile
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = (".c", ".h", ".cpp", ".hpp", ".cc")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
SKIP_DIRS = {"node_modules", "target", "build", ".git"}


def load_rules(path):
    with open(path, "rb") as f:
        r = tomllib.load(f)
    mods = r["modules"]
    for name, m in mods.items():
        for u in m.get("uses", []):
            if u not in mods:
                raise SystemExit(f"rules: module {name} uses unknown module {u}")
    for name, e in r.get("external", {}).items():
        for o in e["only"]:
            if o not in mods:
                raise SystemExit(f"rules: external {name} names unknown module {o}")
    return r


def module_of(rules, rel):
    """The module owning `rel` (a path from the root), the longest matching directory."""
    best, best_len = None, -1
    for name, m in rules["modules"].items():
        for d in m["dirs"]:
            if (rel == d or rel.startswith(d + "/")) and len(d) > best_len:
                best, best_len = name, len(d)
    return best


def external_of(rules, header):
    for name, e in rules.get("external", {}).items():
        for h in e["headers"]:
            if header == h or (h.endswith("/") and header.startswith(h)) or \
                    header.endswith("/" + h):
                return name, e
    return None, None


def resolve(root, rules, mod, rel_file, quoted, header):
    """The included file's path from the root, or None when it is not in the tree."""
    dirs = []
    if quoted:
        dirs.append(os.path.dirname(rel_file))
    dirs += ["include", "src"] + rules["modules"][mod].get("search", [])
    for d in dirs:
        p = os.path.normpath(os.path.join(d, header))
        if not p.startswith("..") and os.path.isfile(os.path.join(root, p)):
            return p
    return None


def check(root, rules):
    """Returns the list of violations (strings) of the tree at `root`."""
    exc = {(e["from"], e["header"]) for e in rules.get("exceptions", [])}
    used_exc = set()
    problems = []
    for name, m in sorted(rules["modules"].items()):
        for d in m["dirs"]:
            for dirpath, dirnames, files in os.walk(os.path.join(root, d)):
                dirnames[:] = sorted(x for x in dirnames if x not in SKIP_DIRS)
                for fn in sorted(files):
                    if not fn.endswith(SOURCES):
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, fn), root)
                    if module_of(rules, rel) != name:
                        continue  # a nested module's file
                    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                        text = f.read()
                    for q, header in INCLUDE.findall(text):
                        quoted = q == '"'
                        close = '"' if quoted else ">"
                        where = f"{rel}: #include {q}{header}{close}"
                        target = resolve(root, rules, name, rel, quoted, header)
                        if target:
                            to = module_of(rules, target)
                            if to is None:
                                problems.append(f"{where}: {target} belongs to no module")
                            elif to != name and to not in m.get("uses", []):
                                if (name, header) in exc:
                                    used_exc.add((name, header))
                                else:
                                    problems.append(f"{where}: module {name} may not use "
                                                    f"module {to} (it may use: "
                                                    f"{', '.join(m.get('uses', [])) or 'nothing'})")
                            continue
                        ext, e = external_of(rules, header)
                        if ext:
                            if name not in e["only"]:
                                if (name, header) in exc:
                                    used_exc.add((name, header))
                                else:
                                    problems.append(f"{where}: only {', '.join(e['only'])} may "
                                                    f"include {ext} headers")
                        elif quoted:
                            problems.append(f"{where}: resolves to no file of the tree and is "
                                            "not a listed external header (add it to rules.toml)")
    for e in sorted(exc - used_exc):
        problems.append(f"rules.toml: exception {e[0]} -> {e[1]} is no longer needed; remove it")
    return problems


def self_test():
    """Builds small trees with one violation each and checks that each is reported."""
    rules = {
        "modules": {
            "public": {"dirs": ["include"], "uses": []},
            "common": {"dirs": ["src/common"], "uses": ["public"]},
            "engine": {"dirs": ["src/engine"], "uses": ["common", "public"]},
            "http": {"dirs": ["src/http"], "uses": ["common", "public"]},
            "app": {"dirs": ["apps/x"], "uses": ["public"]},
        },
        "external": {"llama_cpp": {"headers": ["llama.h", "nlohmann/"], "only": ["engine"]},
                     "libcurl": {"headers": ["curl/"], "only": ["http"]}},
        "exceptions": [],
    }
    base = {
        "include/sipp.h": "#include <stdint.h>\n",
        "src/common/common_int.h": '#include "sipp.h"\n',
        "src/common/buf.c": '#include "common_int.h"\n#include <jansson.h>\n',
        "src/engine/engine.c": '#include "../common/common_int.h"\n#include "llama.h"\n'
                               '#include <nlohmann/json.hpp>\n',
        "src/engine/sub/more.c": '#include "../../common/common_int.h"\n',
        "src/http/http.c": '#include "../common/common_int.h"\n#include <curl/curl.h>\n',
        "apps/x/main.c": '#include <sipp.h>\n#include "sipp.h"\n',
    }
    cases = [
        ({}, None),
        ({"src/common/bad.c": '#include "../engine/engine.c"\n'}, "may not use module engine"),
        ({"src/engine/bad.c": '#include <curl/curl.h>\n'}, "only http may include libcurl"),
        ({"src/http/bad.c": '  #  include "llama.h"\n'}, "only engine may include llama_cpp"),
        ({"apps/x/bad.c": '#include "common/common_int.h"\n'}, "may not use module common"),
        ({"apps/x/bad.c": '#include "no_such.h"\n'}, "resolves to no file"),
        ({"src/orphan.h": "", "src/common/bad.c": '#include "../orphan.h"\n'},
         "belongs to no module"),
    ]
    failed = 0
    for extra, want in cases:
        with tempfile.TemporaryDirectory() as root:
            for rel, text in {**base, **extra}.items():
                os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
                with open(os.path.join(root, rel), "w") as f:
                    f.write(text)
            got = check(root, rules)
            ok = (not got) if want is None else (len(got) == 1 and want in got[0])
            if not ok:
                failed += 1
                print(f"self-test: {sorted(extra)} expected {want!r}, got {got}")
    # an exception silences exactly its include, and an unused one is reported
    with tempfile.TemporaryDirectory() as root:
        for rel, text in {**base, "apps/x/bad.c": '#include "common/common_int.h"\n'}.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        r = dict(rules, exceptions=[{"from": "app", "header": "common/common_int.h", "reason": "x"},
                                    {"from": "app", "header": "gone.h", "reason": "y"}])
        got = check(root, r)
        if len(got) != 1 or "gone.h is no longer needed" not in got[0]:
            failed += 1
            print(f"self-test: exceptions: got {got}")
    print(f"self-test: {len(cases) + 1 - failed}/{len(cases) + 1} passed")
    return 1 if failed else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(HERE, "..", ".."))
    rules = load_rules(os.path.join(HERE, "rules.toml"))
    problems = check(root, rules)
    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} include(s) break the rules (tests/layering/rules.toml, "
              "docs/architecture.md)")
        return 1
    n = len(rules.get("exceptions", []))
    print(f"layering: every include follows the rules ({n} listed exception(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
