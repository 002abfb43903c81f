#!/usr/bin/python3
"""Differential test: `autopilot filter test --json` against Python's re running
OpenMetadata's filter algorithm (ingestion/src/metadata/utils/filters.py) on
generated (patterns, names) cases: Unicode case folding, alternations, anchors,
sets, quantifiers and the spots where Python and PCRE2 syntax differ.

A pattern Python accepts may be rejected by autopilot only if it uses a
construct autopilot documents as unsupported; it must never decide differently.
"""
import json
import os
import random
import re
import subprocess
import sys
import time

AP_BIN = os.environ.get("AP_BIN", "build/autopilot")
SEED = int(os.environ.get("AP_DIFF_SEED", "20261125"))
CONFIGS = int(os.environ.get("AP_DIFF_CONFIGS", "550"))
NAMES_PER_CONFIG = 30

# Constructs autopilot rejects on purpose (with a message) although Python accepts them.
UNSUPPORTED = [r"\N{", "(?a", "(?x:", "(?x-"]

CHARS = ["a", "b", "k", "K", "\u212a", "s", "S", "\u017f", "\u03c3", "\u03a3", "\u03c2",
         "\u00df", "\u1e9e", "i", "I", "\u0130", "\u0131", "\u00e9", "\u00c9", "\u2126",
         "\u03c9", "_", "1", "\u0663", "x", "y", ".", " ", "-", "\u00b5", "\u039c",
         "\u01c5", "\u01c4", "\u01c6", "\u1f80", "\x1c", "\t", "{", "}", "z", "Z",
         "\u180e", "\u3000"]
LIT = ["a", "b", "k", "K", "\u212a", "s", "\u017f", "\u03c3", "\u03a3", "\u03c2",
       "\u00df", "\u1e9e", "i", "I", "\u0130", "\u0131", "\u00e9", "\u00c9", "\u2126",
       "\u03c9", "_", "1", "x", "sys", "db_", "tmp", "\u00b5", "\u01c5", "\u1f80"]
ATOMS = LIT * 3 + [
    ".", r"\d", r"\w", r"\W", r"\s", r"\S", r"\D", "[a-z]", "[^_]", "[_0-9]", "[[:alpha:]]",
    "[k-s]", "[A-Z]", r"[\w.]", r"[\s]", r"[^\d]", "[\u00e0-\u00ff]", "[\u03a3]", r"\.",
    r"\u00e9", r"\U0001F600", r"\x41", r"\101", r"\0", r"\x6b", "{", r"\{", "}",
    r"\t", r"\v", r"\-", "[]a]", "[^]a]", "\u00e9+", r"\N{LATIN SMALL LETTER A}",
    r"[\s\S]", r"[^\S]", r"[\S_]", r"[\s-]", r"[a\s]",
]
QUANT = ["", "", "", "*", "+", "?", "{2}", "{,2}", "{1,}", "{1,2}", "*?", "+?", "*+", "?+",
         "{2}+", "{,}", "{x}", "{1,x}"]
PREFIX = ["", "", "", "", "^", r"\A", "(?i)", "(?s)", "(?m)", "(?x)", "(?a)", "(?u)",
          "(?L)", "(?-i:", "(?i:", "(?s:", "(?x:"]
SUFFIX = ["", "", "", "$", r"\Z", r"\b", "$", r"\z", ".*"]
REJECTED_BY_BOTH = [r"\K", r"\Q", r"\p{L}", r"\h", r"\R", r"\X", r"\G", "(?P>n)", "(?<n>a)",
                    "[[:alpha:]", "a**", "a{2}{3}", "(*UTF)", "a)", "(", "^*", r"\b+",
                    r"\z", "(?P<1>a)", r"\8", "(?#c", r"\x4", r"\u12"]


def gen_atom(r, depth=0):
    k = r.random()
    if k < 0.12 and depth < 2:
        alts = [gen_seq(r, depth + 1, 2) for _ in range(r.randint(2, 3))]
        kind = r.choice(["(", "(?:", "(?P<g>", "(?>", "(?=", "(?!", "(?<=", "(?<!"])
        if kind == "(?P<g>" and r.random() < 0.5:
            return "(?P<g>" + "|".join(alts) + ")(?P=g)"
        if kind == "(" and r.random() < 0.4:
            return "(" + "|".join(alts) + r")\1"
        return kind + "|".join(alts) + ")"
    return r.choice(ATOMS)


def gen_seq(r, depth, maxlen):
    return "".join(gen_atom(r, depth) + r.choice(QUANT) for _ in range(r.randint(1, maxlen)))


def gen_pattern(r):
    # Mostly patterns Python accepts (so names get compared), some it refuses.
    insist = r.random() < 0.85
    for _ in range(8):
        p = gen_pattern1(r)
        if not insist:
            return p
        try:
            re.compile(p, re.IGNORECASE)
            return p
        except Exception:  # noqa: BLE001
            continue
    return p


def gen_pattern1(r):
    if r.random() < 0.03:
        return r.choice(REJECTED_BY_BOTH)
    pre = r.choice(PREFIX)
    body = gen_seq(r, 0, 4)
    if pre.endswith(":"):
        body += ")"
    if r.random() < 0.2:
        body += "|" + gen_seq(r, 0, 3)
    if r.random() < 0.05:
        # a global flag not at the start: Python 3.11 refuses
        body += "(?i)"
    return pre + body + r.choice(SUFFIX)


def gen_name(r, pats):
    k = r.random()
    if k < 0.5:
        # built from the same alphabet: often matches
        return "".join(r.choice(CHARS) for _ in range(r.randint(0, 6)))
    if k < 0.8:
        src = r.choice(pats) if pats else "a"
        s = "".join(c for c in src if c in CHARS or c.isalnum())
        s = "".join(r.choice([c, c.upper(), c.lower(), c.swapcase(), c.casefold()[:1]])
                    for c in s)
        return s + "".join(r.choice(CHARS) for _ in range(r.randint(0, 2)))
    return r.choice(["information_schema", "sys", "sys_extra", "SYS", "\u017fys", "db_x",
                     "tmp", "\U0001F600", "A", "a\u0301", "\u0130", "ss", "SS", "\u00df"])


def py_compile_all(pats):
    try:
        return [re.compile(p, re.IGNORECASE) for p in pats], None
    except (re.error, OverflowError, RecursionError) as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any refusal counts as invalid
        return None, str(e)


def om_filtered_out(inc, exc, name):
    """OpenMetadata's _filter: True means the name is not ingested."""
    if not name:
        return True
    inc_hit = any(p.match(name) for p in inc)
    exc_hit = any(p.match(name) for p in exc)
    if inc and exc:
        return (not inc_hit) or exc_hit
    if inc:
        return not inc_hit
    if exc:
        return exc_hit
    return False


def backref_pairs():
    """Every pair of case-related characters (each one's lower, upper, title
    and case folding, both ways) through a backreference: autopilot answers
    as Python does, or says the name cannot be decided (Python compares by
    simple lowercase, PCRE2 by case folding); never the other answer."""
    edges = {}
    for cp in range(0x110000):
        if 0xd800 <= cp <= 0xdfff:
            continue
        c = chr(cp)
        for f in (c.lower(), c.upper(), c.title(), c.casefold()):
            if f[0] != c:
                edges.setdefault(c, set()).add(f[0])
                edges.setdefault(f[0], set()).add(c)
    seen, pairs = set(), []
    for c in edges:
        if c in seen:
            continue
        stack, comp = [c], []
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                comp.append(x)
                stack.extend(edges.get(x, ()))
        pairs += [a + b for a in comp for b in comp if a != b]
    pairs = [p for p in pairs if len(p.splitlines()) == 1 and len(p.splitlines()[0]) == 2]
    proc = subprocess.run([AP_BIN, "filter", "test", "--no-defaults", "--json",
                           "--include", r"(.)\1"], input="".join(p + "\n" for p in pairs).encode(),
                          capture_output=True, timeout=120)
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(pairs):
        return [("backreference pairs: %d lines for %d names" % (len(lines), len(pairs)),
                 [r"(.)\1"], [], proc.returncode, proc.stderr[:300])]
    failures, doubted = [], 0
    for p, line in zip(pairs, lines):
        got = json.loads(line)
        if "error" in got:
            doubted += 1
            continue
        want = re.match(r"(.)\1", p, re.I) is not None
        if got["kept"] != want:
            failures.append(("backreference decides %r unlike Python (kept=%s): %s"
                             % (p, want, line), [r"(.)\1"], [], 0, b""))
    print("backreference pairs: %d, %d said undecidable" % (len(pairs), doubted))
    if doubted == 0 or doubted > 200:
        failures.append(("backreference pairs: %d said undecidable" % doubted, [], [], 0, b""))
    return failures


def main():
    import warnings
    warnings.simplefilter("ignore")
    r = random.Random(SEED)
    cases = agree = rejected_ok = both_invalid = limit_hits = backref_doubts = 0
    failures = []
    t0 = time.time()
    for _ in range(CONFIGS):
        incs = [gen_pattern(r) for _ in range(r.choice([0, 1, 1, 2]))]
        excs = [gen_pattern(r) for _ in range(r.choice([0, 1, 1, 2]))]
        names = [gen_name(r, incs + excs) for _ in range(NAMES_PER_CONFIG)]
        names = [n for n in names if "\n" not in n and "\r" not in n]
        argv = [AP_BIN, "filter", "test", "--no-defaults", "--json"]
        for p in incs:
            argv += ["--include=" + p]
        for p in excs:
            argv += ["--exclude=" + p]
        pinc, err1 = py_compile_all(incs)
        pexc, err2 = py_compile_all(excs)
        py_err = err1 or err2
        proc = subprocess.run(argv, input="".join(n + "\n" for n in names).encode(),
                              capture_output=True, timeout=60)
        cases += len(names)
        if py_err is not None:
            if proc.returncode != 2 or b"invalid pattern" not in proc.stderr:
                failures.append(("python rejects (%s), autopilot accepted" % py_err,
                                 incs, excs, proc.returncode, proc.stderr[:300]))
            else:
                both_invalid += len(names)
            continue
        if proc.returncode == 2 and b"invalid pattern" in proc.stderr:
            allp = "".join(incs + excs)
            # PCRE2 refuses a lookbehind that repeats without bound something
            # of no width (Python counts it as width 0): documented.
            if any(u in allp for u in UNSUPPORTED) or re.search(r"\{\d{6,}", allp) or \
                    b"lookbehind assertion is not fixed length" in proc.stderr:
                rejected_ok += len(names)
            else:
                failures.append(("python accepts, autopilot rejects", incs, excs,
                                 proc.returncode, proc.stderr[:300]))
            continue
        limit_ok = proc.returncode == 2 and b"could not be decided" in proc.stderr
        if proc.returncode != 0 and not limit_ok:
            failures.append(("autopilot failed", incs, excs, proc.returncode, proc.stderr[:300]))
            continue
        lines = proc.stdout.decode().splitlines()
        if len(lines) != len(names):
            failures.append(("line count %d != %d" % (len(lines), len(names)), incs, excs,
                             proc.returncode, proc.stderr[:300]))
            continue
        for name, line in zip(names, lines):
            got = json.loads(line)
            if "error" in got and "limit" in got["error"] and got["name"] == name:
                limit_hits += 1   # an error for that name, never a silent answer
                continue
            if "error" in got and "backreference" in got["error"] and got["name"] == name:
                backref_doubts += 1   # the same: said, not answered unlike Python
                continue
            want_kept = not om_filtered_out(pinc, pexc, name)
            if got["name"] != name or got["kept"] != want_kept:
                failures.append(("decision differs for %r: python kept=%s, autopilot %s" %
                                 (name, want_kept, line), incs, excs, 0, b""))
            else:
                agree += 1
    failures += backref_pairs()
    dt = time.time() - t0
    print("differential: %d cases (%d agree, %d both invalid, %d rejected as unsupported), "
          "%d hit the match limit, %d undecided for a backreference, %d failures, %.1f s"
          % (cases, agree, both_invalid, rejected_ok, limit_hits, backref_doubts, len(failures),
             dt))
    for f in failures[:40]:
        print("FAIL:", f[0], "includes=%r excludes=%r rc=%s %s" % (f[1], f[2], f[3], f[4]))
    if failures:
        sys.exit(1)
    if cases < 10000 or agree < 10000:
        print("too few cases compared")
        sys.exit(1)


if __name__ == "__main__":
    main()
