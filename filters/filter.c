/*
 * filter.c — Python-syntax include/exclude patterns compiled with PCRE2
 * (JIT, CASELESS|UTF|UCP|ANCHORED, match and depth limits), and
 * OpenMetadata's include-then-exclude decision.
 *
 * filter_translate() is a one-pass scanner over the Python pattern that
 * rewrites the constructs whose spelling differs (\Z, \u1234, {,n}, octal
 * escapes, [[ inside sets, verbose mode...) and rejects those PCRE2 would run
 * with another meaning or Python would refuse (\K, \Q, \p, (?a), (?L),
 * global flags not at the start...). Pure: PCRE2 only, never prints.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <string.h>

#include "filter.h"
#include "util.h"

static const char *const origin_names[FILTER_ORIGIN_MAX] = {
	"builtin", "config", "service", "cli"
};
static const char *const rule_names[FILTER_RULE_MAX] = {
	"none", "empty", "include", "no-include", "exclude", "no-exclude"
};

const char *
filter_origin_name(enum filter_origin o)
{
	return (unsigned)o < FILTER_ORIGIN_MAX ? origin_names[o] : "?";
}

const char *
filter_rule_name(enum filter_rule r)
{
	return (unsigned)r < FILTER_RULE_MAX ? rule_names[r] : "?";
}

/* ---- translation ---------------------------------------------------- */

/*
 * Python's IGNORECASE equivalences (sre's _casefix) that PCRE2's Unicode
 * caseless matching lacks: each group's members all match each other
 * where Python is case-insensitive, so the scanner spells a group out
 * (as a set) wherever one of its members appears.
 */
static const struct {
	uint32_t cp[4];
	const char *set;	/* the members, as set contents */
} case_groups[] = {
	/* i, I, dotless i, dotted capital I */
	{ { 'i', 'I', 0x131, 0x130 }, "iI\\x{131}\\x{130}" },
	/* iota and upsilon with dialytika and tonos / oxia */
	{ { 0x390, 0x1fd3, 0, 0 }, "\\x{390}\\x{1fd3}" },
	{ { 0x3b0, 0x1fe3, 0, 0 }, "\\x{3b0}\\x{1fe3}" },
	/* ligatures long s t, s t */
	{ { 0xfb05, 0xfb06, 0, 0 }, "\\x{fb05}\\x{fb06}" },
};

/* Python's MAXREPEAT: the width of what has no upper bound. */
#define W_INF ((long)1 << 32)

/*
 * The width (fewest and most characters matched) of what is read at one
 * depth, as Python's sre works it out (SubPattern.getwidth): Python refuses
 * a lookbehind whose width is not fixed, where PCRE2 takes top-level
 * branches of different fixed widths.
 */
struct xlevel {
	long lo, hi;		/* the branch being read */
	long alt_lo, alt_hi;	/* the branches before it, if alts */
	bool alts;
	char kind;		/* 0 a group, '=' a lookahead, '<' a lookbehind,
				 * '?' a conditional */
	bool lb_outer;		/* the outermost lookbehind: ends lb_groups */
	size_t at;		/* where the group starts */
};

struct xlate {
	const char *p;		/* pattern */
	size_t len, i;
	struct ap_buf out;
	bool verbose;
	int groups;		/* capturing groups opened so far */
	int open[256];		/* stack: group number, or 0 for non-capturing */
	int depth;
	bool ci[257];		/* case-insensitive at each depth (ci[0]: top) */
	long last_cp;		/* code point of the last escape, -1 if none */
	bool in_class;
	/* Named groups so far: the name is p[off, off + len). */
	struct xlate_name {
		size_t off, len;
		int group;
	} *names;
	size_t nnames, names_cap;
	int max_cond_ref;	/* highest group number a (?(N)...) names */
	size_t max_cond_at;
	struct xlevel lv[257];	/* widths at each depth (lv[0]: top) */
	long last_lo, last_hi;	/* width of the last atom (what a quantifier repeats) */
	long atom_lo, atom_hi;	/* width of the escape or (?P=name) just read */
	struct { long lo, hi; } *gw;	/* width of each closed group, by number */
	size_t ngw;
	int lb_groups;		/* inside a lookbehind: the groups before it; else -1 */
	bool ci_backref;	/* a backreference where case is ignored */
	char *cause;
	size_t at;
};

static int
xfail(struct xlate *x, size_t at, const char *fmt, ...) AP_PRINTFLIKE(3, 4);

static int
xfail(struct xlate *x, size_t at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	x->cause = ap_xvprintf(fmt, ap);
	va_end(ap);
	x->at = at;
	return -1;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int case_group(long cp);
static bool group_open(const struct xlate *x, int g);

static void
push(struct xlate *x, int group)
{
	x->ci[x->depth + 1] = x->ci[x->depth];
	x->open[x->depth++] = group;
	memset(&x->lv[x->depth], 0, sizeof x->lv[x->depth]);
	x->lv[x->depth].at = x->i;
}

static long
w_add(long a, long b)
{
	return a + b >= W_INF ? W_INF : a + b;
}

static long
w_mul(long a, long n)
{
	if (a == 0 || n == 0)
		return 0;
	if (a >= W_INF || n >= W_INF || a > W_INF / n)
		return W_INF;
	return a * n >= W_INF ? W_INF : a * n;
}

/* An atom of width [lo, hi] ends the branch being read. */
static void
w_atom(struct xlate *x, long lo, long hi)
{
	struct xlevel *l = &x->lv[x->depth];

	l->lo = w_add(l->lo, lo);
	l->hi = w_add(l->hi, hi);
	x->last_lo = lo;
	x->last_hi = hi;
}

/* The last atom repeated min to max (-1: no bound) times. */
static void
w_repeat(struct xlate *x, long min, long max)
{
	struct xlevel *l = &x->lv[x->depth];

	l->lo = w_add(l->lo - x->last_lo, w_mul(x->last_lo, min));
	l->hi = w_add(l->hi - x->last_hi, max < 0 ? (x->last_hi > 0 ? W_INF : 0) :
	    w_mul(x->last_hi, max));
	x->last_lo = x->last_hi = 0;
}

/* A '|': the branch being read joins the others. */
static void
w_branch(struct xlate *x)
{
	struct xlevel *l = &x->lv[x->depth];

	if (!l->alts || l->lo < l->alt_lo)
		l->alt_lo = l->lo;
	if (!l->alts || l->hi > l->alt_hi)
		l->alt_hi = l->hi;
	l->alts = true;
	l->lo = l->hi = 0;
}

/* The width of closed group g, as a reference to it matches. */
static void
w_group_ref(struct xlate *x, int g)
{
	if (g > 0 && (size_t)g < x->ngw) {
		x->atom_lo = x->gw[g].lo;
		x->atom_hi = x->gw[g].hi;
	} else
		x->atom_lo = x->atom_hi = 0;
}

/*
 * The group at the current depth closes: a lookbehind must have one width
 * (Python's compiler refuses it otherwise), a capturing group's width is
 * kept for references to it, and the group is an atom of its parent.
 */
static int
w_close(struct xlate *x)
{
	struct xlevel *l = &x->lv[x->depth];
	long lo, hi;
	int g = x->open[x->depth - 1];

	if (l->kind == '?' && !l->alts) {
		lo = 0;		/* no "no" branch: it may match nothing */
		hi = l->hi;
	} else {
		if (l->alts)
			w_branch(x);
		else {
			l->alt_lo = l->lo;
			l->alt_hi = l->hi;
		}
		lo = l->alt_lo;
		hi = l->alt_hi;
	}
	if (l->kind == '<') {
		if (lo != hi)
			return xfail(x, l->at, "look-behind requires fixed-width pattern"
			    " (Python's re refuses it)");
		if (l->lb_outer)
			x->lb_groups = -1;
	}
	if (g > 0) {
		if ((size_t)g >= x->ngw) {
			size_t n = x->ngw < 16 ? 16 : x->ngw * 2;

			/* Doubled, not grown by a step: "(a)(a)(a)..." closes
			 * a group for every three bytes of the pattern. */
			if (n <= (size_t)g)
				n = (size_t)g + 1;
			x->gw = ap_xreallocarray(x->gw, n, sizeof *x->gw);
			memset(x->gw + x->ngw, 0, (n - x->ngw) * sizeof *x->gw);
			x->ngw = n;
		}
		x->gw[g].lo = lo;
		x->gw[g].hi = hi;
	}
	if (l->kind == '=' || l->kind == '<')
		lo = hi = 0;	/* an assertion matches no characters */
	x->depth--;
	w_atom(x, lo, hi);
	return 0;
}

/* Python: a reference inside a lookbehind to a group opened inside it. */
static int
w_lookbehind_ref(struct xlate *x, size_t at, int g)
{
	if (x->lb_groups < 0)
		return 0;
	if (g > x->groups || group_open(x, g))
		return xfail(x, at, "cannot refer to an open group");
	if (g > x->lb_groups)
		return xfail(x, at, "cannot refer to group defined in the same"
		    " lookbehind subpattern");
	return 0;
}

static void
emit_cp(struct xlate *x, uint32_t cp)
{
	int g;

	x->last_cp = (long)cp;
	if (!x->in_class && x->ci[x->depth] && (g = case_group((long)cp)) >= 0) {
		ap_buf_printf(&x->out, "[%s]", case_groups[g].set);
		return;
	}
	ap_buf_printf(&x->out, "\\x{%x}", (unsigned)cp);
}

/* \x, \u, \U with exactly n hex digits (Python insists). */
static int
xlate_hex(struct xlate *x, size_t start, int n)
{
	uint32_t v = 0;
	int k, h;

	for (k = 0; k < n; k++) {
		if (x->i >= x->len || (h = hexval(x->p[x->i])) < 0)
			return xfail(x, start, "incomplete escape %.*s",
			    (int)(x->i - start), x->p + start);
		v = v * 16 + (uint32_t)h;
		x->i++;
	}
	if (v > 0x10ffff)
		return xfail(x, start, "bad escape %.*s", (int)(x->i - start),
		    x->p + start);
	if (v >= 0xd800 && v <= 0xdfff)
		return xfail(x, start, "escape %.*s is a surrogate, which no "
		    "UTF-8 name can contain", (int)(x->i - start), x->p + start);
	emit_cp(x, v);
	return 0;
}

static bool
is_oct(char c)
{
	return c >= '0' && c <= '7';
}

/* The case_groups entry cp belongs to, or -1. */
static int
case_group(long cp)
{
	size_t g, k;

	for (g = 0; cp > 0 && g < AP_ARRAY_LEN(case_groups); g++)
		for (k = 0; k < AP_ARRAY_LEN(case_groups[g].cp); k++)
			if (case_groups[g].cp[k] == (uint32_t)cp)
				return (int)g;
	return -1;
}

/* Bits of the case_groups with a member in [lo, hi]. */
static unsigned
case_groups_in(long lo, long hi)
{
	unsigned bits = 0;
	size_t g, k;

	for (g = 0; g < AP_ARRAY_LEN(case_groups); g++)
		for (k = 0; k < AP_ARRAY_LEN(case_groups[g].cp); k++)
			if (case_groups[g].cp[k] != 0 &&
			    (long)case_groups[g].cp[k] >= lo &&
			    (long)case_groups[g].cp[k] <= hi)
				bits |= 1u << g;
	return bits;
}

/* Decodes the UTF-8 sequence at s (at most n bytes); returns its length. */
static size_t
utf8_decode(const char *s, size_t n, long *cp)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = p[0] < 0x80 ? 1 : p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
	long v = len == 1 ? p[0] : len == 2 ? (p[0] & 0x1f) : len == 3 ?
	    (p[0] & 0x0f) : (p[0] & 0x07);
	size_t k;

	if (len > n)
		len = n;
	for (k = 1; k < len; k++)
		v = (v << 6) | (p[k] & 0x3f);
	*cp = v;
	return len;
}

/* Python's \s (str.isspace()), written out: PCRE2's lacks U+001C..U+001F
 * and has U+180E, which Unicode no longer counts as space. */
#define PY_SPACE "\\x{9}-\\x{d}\\x{1c}-\\x{20}\\x{85}\\x{a0}\\x{1680}" \
	"\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
/* ... and every other code point: Python's \S, inside a set too. */
#define PY_NOT_SPACE "\\x{0}-\\x{8}\\x{e}-\\x{1b}\\x{21}-\\x{84}\\x{86}-\\x{9f}" \
	"\\x{a1}-\\x{167f}\\x{1681}-\\x{1fff}\\x{200b}-\\x{2027}" \
	"\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}" \
	"\\x{3001}-\\x{10ffff}"

/* An escape at x->p[x->i] == '\\'. in_class: inside [...]. */
static int
xlate_escape(struct xlate *x, bool in_class)
{
	size_t start = x->i;
	char c;

	x->i++;
	if (x->i >= x->len)
		return xfail(x, start, "bad escape (end of pattern)");
	c = x->p[x->i++];
	switch (c) {
	case 'x':
		return xlate_hex(x, start, 2);
	case 'u':
		return xlate_hex(x, start, 4);
	case 'U':
		return xlate_hex(x, start, 8);
	case 'N':
		return xfail(x, start, "named character escapes \\N{...} are "
		    "not supported (write the character itself, or \\uXXXX)");
	case 'a': case 'f': case 'n': case 'r': case 't':
		ap_buf_addc(&x->out, '\\');
		ap_buf_addc(&x->out, c);
		return 0;
	case 'v':
		/* PCRE2's \v is a class of vertical space; Python's is VT. */
		emit_cp(x, 0x0b);
		return 0;
	case 'd': case 'D': case 'w': case 'W':
		ap_buf_addc(&x->out, '\\');
		ap_buf_addc(&x->out, c);
		return 0;
	case 's':
		ap_buf_adds(&x->out, in_class ? PY_SPACE : "[" PY_SPACE "]");
		return 0;
	case 'S':
		ap_buf_adds(&x->out, in_class ? PY_NOT_SPACE : "[^" PY_SPACE "]");
		return 0;
	case 'b':
		/* In a set, Python's \b is backspace, as PCRE2's. */
		ap_buf_adds(&x->out, in_class ? "\\x{8}" : "\\b");
		if (!in_class)
			x->atom_lo = x->atom_hi = 0;
		return 0;
	case 'A': case 'B': case 'Z':
		if (in_class)
			return xfail(x, start, "bad escape \\%c", c);
		x->atom_lo = x->atom_hi = 0;
		ap_buf_adds(&x->out, c == 'Z' ? "\\z" : c == 'A' ? "\\A" : "\\B");
		return 0;
	default:
		break;
	}
	if (c >= '0' && c <= '9') {
		uint32_t v;
		int n;

		/* Python: \0 and \0oo are octal; \ooo with three octal
		 * digits is octal; otherwise \N or \NN refers to a group. */
		if (c == '0' || (in_class && is_oct(c))) {
			v = (uint32_t)(c - '0');
			for (n = 0; n < 2 && x->i < x->len && is_oct(x->p[x->i]); n++)
				v = v * 8 + (uint32_t)(x->p[x->i++] - '0');
			if (v > 0377)
				return xfail(x, start, "octal escape value "
				    "\\%.*s outside of range 0-0o377",
				    (int)(x->i - start - 1), x->p + start + 1);
			emit_cp(x, v);
			return 0;
		}
		if (in_class)
			return xfail(x, start, "bad escape \\%c", c);
		if (is_oct(c) && x->i + 1 < x->len && is_oct(x->p[x->i]) &&
		    is_oct(x->p[x->i + 1])) {
			v = (uint32_t)((c - '0') * 64 + (x->p[x->i] - '0') * 8 +
			    (x->p[x->i + 1] - '0'));
			x->i += 2;
			if (v > 0377)
				return xfail(x, start, "octal escape value "
				    "\\%.*s outside of range 0-0o377", 3,
				    x->p + start + 1);
			emit_cp(x, v);
			return 0;
		}
		n = c - '0';
		if (x->i < x->len && x->p[x->i] >= '0' && x->p[x->i] <= '9')
			n = n * 10 + (x->p[x->i++] - '0');
		if (n > x->groups)
			return xfail(x, start, "invalid group reference %d", n);
		if (group_open(x, n))
			return xfail(x, start, "cannot refer to an open group");
		if (w_lookbehind_ref(x, start, n) < 0)
			return -1;
		w_group_ref(x, n);
		x->ci_backref |= x->ci[x->depth];
		ap_buf_printf(&x->out, "\\g{%d}", n);
		return 0;
	}
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return xfail(x, start, "bad escape \\%c (Python's re has no "
		    "such escape)", c);
	/* Escaped punctuation or any non-ASCII character: a literal. */
	if ((unsigned char)c < 0x80) {
		ap_buf_addc(&x->out, '\\');
		ap_buf_addc(&x->out, c);
	} else {
		x->i--;
		while (x->i < x->len) {
			ap_buf_addc(&x->out, x->p[x->i++]);
			if (x->i >= x->len ||
			    ((unsigned char)x->p[x->i] & 0xc0) != 0x80)
				break;
		}
	}
	return 0;
}

/* A set [...] at x->p[x->i] == '['. */
static int
xlate_class(struct xlate *x)
{
	size_t start = x->i;
	long prev = -1, cp;
	bool range = false;
	unsigned groups = 0;	/* case_groups with a member in the set */

	x->in_class = true;
	ap_buf_addc(&x->out, '[');
	x->i++;
	if (x->i < x->len && x->p[x->i] == '^') {
		ap_buf_addc(&x->out, '^');
		x->i++;
	}
	if (x->i < x->len && x->p[x->i] == ']') {
		ap_buf_adds(&x->out, "\\]");
		x->i++;
		prev = ']';
	}
	for (;;) {
		char c;

		if (x->i >= x->len)
			return xfail(x, start, "unterminated character set");
		c = x->p[x->i];
		cp = -1;
		if (c == ']') {
			for (size_t g = 0; x->ci[x->depth] &&
			    g < AP_ARRAY_LEN(case_groups); g++)
				if (groups & (1u << g))
					ap_buf_adds(&x->out, case_groups[g].set);
			ap_buf_addc(&x->out, ']');
			x->i++;
			x->in_class = false;
			return 0;
		}
		if (c == '\\') {
			size_t esc = x->i;

			x->last_cp = -1;
			if (xlate_escape(x, true) < 0)
				return -1;
			/* \s and \S are written out as ranges, which must not
			 * join a range around them: Python refuses one. */
			if (x->i == esc + 2 && (x->p[esc + 1] == 's' ||
			    x->p[esc + 1] == 'S') && (range || (x->i + 1 < x->len &&
			    x->p[x->i] == '-' && x->p[x->i + 1] != ']')))
				return xfail(x, esc, "bad character range (\\%c is a"
				    " set, not a character)", x->p[esc + 1]);
			cp = x->last_cp;
			if (cp < 0 && strchr("-[]\\^.$|?*+(){}", x->p[x->i - 1]) != NULL &&
			    x->p[x->i - 2] == '\\')
				cp = (unsigned char)x->p[x->i - 1];
		} else if (c == '[') {
			/* Python has no POSIX classes: "[[:alpha:]]" is a set
			 * holding '[', ':', 'a'... followed by a literal ']'. */
			ap_buf_adds(&x->out, "\\[");
			x->i++;
			cp = '[';
		} else if (c == '-' && prev >= 0 && !range && x->i + 1 < x->len &&
		    x->p[x->i + 1] != ']') {
			ap_buf_addc(&x->out, '-');
			x->i++;
			range = true;
			continue;
		} else {
			size_t n = utf8_decode(x->p + x->i, x->len - x->i, &cp);

			ap_buf_add(&x->out, x->p + x->i, n);
			x->i += n;
		}
		if (range) {
			if (prev >= 0 && cp >= 0)
				groups |= case_groups_in(prev, cp);
			range = false;
			prev = -1;
			continue;
		}
		if (cp > 0)
			groups |= case_groups_in(cp, cp);
		prev = cp;
	}
}

/* Parses "{m,n}"-like text at x->i; returns the length consumed or 0 when it
 * is not a quantifier (then Python reads '{' literally). */
static size_t
brace_quant(const struct xlate *x, long *lo, long *hi)
{
	size_t j = x->i + 1;
	long a = -1, b = -1;

	if (j < x->len && x->p[j] >= '0' && x->p[j] <= '9') {
		a = 0;
		while (j < x->len && x->p[j] >= '0' && x->p[j] <= '9') {
			if (a < 100000000)
				a = a * 10 + (x->p[j] - '0');
			j++;
		}
	}
	if (j < x->len && x->p[j] == '}') {
		if (a < 0)
			return 0;
		*lo = *hi = a;
		return j + 1 - x->i;
	}
	if (j >= x->len || x->p[j] != ',')
		return 0;
	j++;
	if (j < x->len && x->p[j] >= '0' && x->p[j] <= '9') {
		b = 0;
		while (j < x->len && x->p[j] >= '0' && x->p[j] <= '9') {
			if (b < 100000000)
				b = b * 10 + (x->p[j] - '0');
			j++;
		}
	}
	if (j >= x->len || x->p[j] != '}')
		return 0;
	*lo = a < 0 ? 0 : a;
	*hi = b;
	return j + 1 - x->i;
}

/* Whether s[0, n) is an ASCII identifier (group names are ASCII here). */
static bool
ident_at(const char *s, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
		    s[k] == '_' || (k > 0 && s[k] >= '0' && s[k] <= '9')))
			return false;
	return n > 0;
}

/* The number of the group named p[off, off + len) defined so far, or -1. */
static int
name_group(const struct xlate *x, size_t off, size_t len)
{
	size_t k;

	for (k = 0; k < x->nnames; k++)
		if (x->names[k].len == len &&
		    memcmp(x->p + x->names[k].off, x->p + off, len) == 0)
			return x->names[k].group;
	return -1;
}

/* Whether group g is still open at this point. */
static bool
group_open(const struct xlate *x, int g)
{
	int k;

	for (k = 0; k < x->depth; k++)
		if (x->open[k] == g)
			return true;
	return false;
}

/* "(?" constructs. x->i is at '('. top_start: nothing emitted at top level yet. */
enum { GRP_OPEN, GRP_NOTHING, GRP_ATOM };

static int
xlate_group(struct xlate *x, bool top_start, int *what)
{
	size_t start = x->i;
	const char *p = x->p;
	char c;

	if (x->depth >= (int)AP_ARRAY_LEN(x->open))
		return xfail(x, start, "too many nested groups");
	if (x->i + 1 < x->len && p[x->i + 1] == '*')
		return xfail(x, start + 1, "nothing to repeat");
	*what = GRP_OPEN;
	if (x->i + 1 >= x->len || p[x->i + 1] != '?') {
		push(x, ++x->groups);
		ap_buf_addc(&x->out, '(');
		x->i++;
		return 0;
	}
	x->i += 2;
	if (x->i >= x->len)
		return xfail(x, start, "unexpected end of pattern");
	c = p[x->i];
	switch (c) {
	case ':': case '=': case '!': case '>':
		push(x, 0);
		if (c == '=' || c == '!')
			x->lv[x->depth].kind = '=';
		ap_buf_printf(&x->out, "(?%c", c);
		x->i++;
		return 0;
	case '<':
		if (x->i + 1 < x->len && (p[x->i + 1] == '=' || p[x->i + 1] == '!')) {
			push(x, 0);
			x->lv[x->depth].kind = '<';
			x->lv[x->depth].at = start;
			if (x->lb_groups < 0) {
				x->lb_groups = x->groups;
				x->lv[x->depth].lb_outer = true;
			}
			ap_buf_printf(&x->out, "(?<%c", p[x->i + 1]);
			x->i += 2;
			return 0;
		}
		return xfail(x, start, "unknown extension ?<%c (Python names "
		    "groups with (?P<name>...))", x->i + 1 < x->len ? p[x->i + 1] : ' ');
	case '#':
		while (x->i < x->len && p[x->i] != ')')
			x->i++;
		if (x->i >= x->len)
			return xfail(x, start, "missing ), unterminated comment");
		x->i++;
		*what = GRP_NOTHING;
		return 0;
	case 'P': {
		size_t n0, n;

		x->i++;
		if (x->i >= x->len || (p[x->i] != '<' && p[x->i] != '='))
			return xfail(x, start, "unknown extension ?P%c",
			    x->i < x->len ? p[x->i] : ' ');
		c = p[x->i++];
		n0 = x->i;
		while (x->i < x->len && p[x->i] != (c == '<' ? '>' : ')'))
			x->i++;
		if (x->i >= x->len)
			return xfail(x, start, "missing %c, unterminated name",
			    c == '<' ? '>' : ')');
		n = x->i - n0;
		if (n == 0)
			return xfail(x, start, "missing group name");
		for (size_t k = n0; k < n0 + n; k++)
			if (!((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' &&
			    p[k] <= 'Z') || p[k] == '_' || (p[k] >= '0' &&
			    p[k] <= '9' && k > n0)))
				return xfail(x, n0, "bad character in group "
				    "name '%.*s' (only ASCII names are "
				    "supported)", (int)n, p + n0);
		x->i++;
		if (c == '<') {
			push(x, ++x->groups);
			if (x->nnames == x->names_cap) {
				x->names_cap = x->names_cap ? x->names_cap * 2 : 8;
				x->names = ap_xreallocarray(x->names,
				    x->names_cap, sizeof *x->names);
			}
			x->names[x->nnames++] = (struct xlate_name){ n0, n, x->groups };
			ap_buf_printf(&x->out, "(?P<%.*s>", (int)n, p + n0);
		} else {
			int g = name_group(x, n0, n);

			if (g < 0)
				return xfail(x, n0, "unknown group name '%.*s'",
				    (int)n, p + n0);
			if (group_open(x, g))
				return xfail(x, n0, "cannot refer to an open group");
			if (w_lookbehind_ref(x, n0, g) < 0)
				return -1;
			w_group_ref(x, g);
			x->ci_backref |= x->ci[x->depth];
			ap_buf_printf(&x->out, "(?P=%.*s)", (int)n, p + n0);
			*what = GRP_ATOM;
		}
		return 0;
	}
	case '(': {
		/*
		 * (?(N)yes|no) or (?(name)yes|no). PCRE2 reads more between
		 * the parentheses than Python (+1 and -1 relative numbers,
		 * R, R1 and R&name recursion tests, DEFINE, VERSION>=...),
		 * so the condition is checked as Python does and passed on
		 * in a spelling PCRE2 can only read one way.
		 */
		size_t n0 = ++x->i, n, k;
		long g = 0;

		while (x->i < x->len && p[x->i] != ')')
			x->i++;
		if (x->i >= x->len)
			return xfail(x, start, "missing ), unterminated name");
		n = x->i - n0;
		if (n == 0)
			return xfail(x, n0, "missing group name");
		if (ident_at(p + n0, n)) {
			if ((g = name_group(x, n0, n)) < 0)
				return xfail(x, n0, "unknown group name '%.*s'",
				    (int)n, p + n0);
			if (w_lookbehind_ref(x, n0, (int)g) < 0)
				return -1;
			push(x, 0);
			x->lv[x->depth].kind = '?';
			ap_buf_printf(&x->out, "(?(<%.*s>)", (int)n, p + n0);
			x->i++;
			return 0;
		}
		for (k = n0; k < n0 + n; k++) {
			if (p[k] < '0' || p[k] > '9')
				return xfail(x, n0, "bad character in group name "
				    "'%.*s' (a condition names a group by its "
				    "number or its name)", (int)n, p + n0);
			if (g < 100000)
				g = g * 10 + (p[k] - '0');
		}
		if (g == 0)
			return xfail(x, n0, "bad group number");
		if (g > x->max_cond_ref) {
			x->max_cond_ref = (int)g;
			x->max_cond_at = n0;
		}
		if (w_lookbehind_ref(x, n0, (int)g) < 0)
			return -1;
		push(x, 0);
		x->lv[x->depth].kind = '?';
		ap_buf_printf(&x->out, "(?(%ld)", g);
		x->i++;
		return 0;
	}
	default:
		break;
	}
	/* Flags: (?imsx) at the start, or (?ims-ims:...) scoped. */
	{
		struct ap_buf on, off;
		bool neg = false;
		int rc = 0;

		ap_buf_init(&on);
		ap_buf_init(&off);
		for (;; x->i++) {
			if (x->i >= x->len) {
				rc = xfail(x, start, "missing -, : or )");
				break;
			}
			c = p[x->i];
			if (c == ')' || c == ':')
				break;
			if (c == '-' && !neg) {
				neg = true;
				continue;
			}
			if (c == 'i' || c == 'm' || c == 's' || c == 'u')
				ap_buf_addc(neg ? &off : &on, c);
			else if (c == 'x' && !neg)
				ap_buf_addc(&on, c);
			else if (c == 'a') {
				rc = xfail(x, x->i, "the ASCII flag (?a) is not "
				    "supported: patterns match Unicode-aware, "
				    "like Python's default");
				break;
			} else if (c == 'L') {
				rc = xfail(x, x->i, "bad inline flag: cannot use "
				    "'L' flag with a str pattern");
				break;
			} else {
				rc = xfail(x, x->i, "unknown flag");
				break;
			}
		}
		if (rc == 0 && c == ')') {
			if (neg)
				rc = xfail(x, start, "missing :");
			else if (!top_start)
				rc = xfail(x, start, "global flags not at the "
				    "start of the expression");
			else {
				if ((on.len > 0 && memchr(on.data, 'x', on.len) != NULL))
					x->verbose = true;
				for (size_t k = 0; k < on.len; k++)
					if (on.data[k] == 'm' || on.data[k] == 's')
						ap_buf_printf(&x->out, "(?%c)", on.data[k]);
				x->i++;
				*what = GRP_NOTHING;
			}
		} else if (rc == 0) {
			if ((on.len > 0 && memchr(on.data, 'x', on.len) != NULL))
				rc = xfail(x, start, "the verbose flag is only "
				    "supported at the start: (?x)");
			else if ((off.len > 0 && memchr(off.data, 'u', off.len) != NULL))
				rc = xfail(x, start, "bad inline flag: cannot "
				    "turn off flag 'u'");
			else {
				ap_buf_adds(&x->out, "(?");
				for (size_t k = 0; k < on.len; k++)
					if (on.data[k] != 'u')
						ap_buf_addc(&x->out, on.data[k]);
				if (off.len > 0)
					ap_buf_addc(&x->out, '-');
				if (off.len > 0)
					ap_buf_add(&x->out, off.data, off.len);
				ap_buf_addc(&x->out, ':');
				push(x, 0);
				if (on.len > 0 && memchr(on.data, 'i', on.len) != NULL)
					x->ci[x->depth] = true;
				if (off.len > 0 && memchr(off.data, 'i', off.len) != NULL)
					x->ci[x->depth] = false;
				x->i++;
			}
		}
		ap_buf_cleanup(&on);
		ap_buf_cleanup(&off);
		return rc;
	}
}

/* filter_translate(), saying whether a backreference ignores case. */
static char *
translate(const char *py, char **cause, size_t *offset, bool *ci_backref)
{
	struct xlate x;
	bool top_start = true, can_repeat = false, repeated = false;
	size_t before;

	memset(&x, 0, sizeof x);
	x.ci[0] = true;
	x.lb_groups = -1;
	x.p = py;
	x.len = strlen(py);
	ap_buf_init(&x.out);
	ap_buf_adds(&x.out, "");
	while (x.i < x.len) {
		char c = py[x.i];
		long lo, hi;
		size_t n;

		if (x.verbose && (c == ' ' || c == '\t' || c == '\n' ||
		    c == '\r' || c == '\f' || c == '\v')) {
			x.i++;
			continue;
		}
		if (x.verbose && c == '#') {
			while (x.i < x.len && py[x.i] != '\n')
				x.i++;
			continue;
		}
		switch (c) {
		case '\\':
			before = x.i;
			x.atom_lo = x.atom_hi = 1;
			if (xlate_escape(&x, false) < 0)
				goto fail;
			w_atom(&x, x.atom_lo, x.atom_hi);
			/* \A, \Z, \b, \B are positions: Python will not repeat them. */
			can_repeat = strchr("AZbB", py[before + 1]) == NULL;
			repeated = false;
			top_start = false;
			break;
		case '[':
			if (xlate_class(&x) < 0)
				goto fail;
			w_atom(&x, 1, 1);
			can_repeat = true;
			repeated = false;
			top_start = false;
			break;
		case '(': {
			int what = GRP_OPEN;

			if (xlate_group(&x, top_start, &what) < 0)
				goto fail;
			if (what == GRP_NOTHING)
				break;
			if (what == GRP_ATOM)
				w_atom(&x, x.atom_lo, x.atom_hi);
			top_start = false;
			can_repeat = what == GRP_ATOM;
			repeated = false;
			break;
		}
		case ')':
			if (x.depth == 0) {
				x.cause = ap_xstrdup("unbalanced parenthesis");
				x.at = x.i;
				goto fail;
			}
			if (w_close(&x) < 0)
				goto fail;
			ap_buf_addc(&x.out, ')');
			x.i++;
			can_repeat = true;
			repeated = false;
			break;
		case '|':
			w_branch(&x);
			ap_buf_addc(&x.out, '|');
			x.i++;
			can_repeat = false;
			repeated = false;
			/* Python takes global flags in the first branch only. */
			top_start = false;
			break;
		case '*': case '+': case '?': case '{':
			if (c == '{') {
				n = brace_quant(&x, &lo, &hi);
				if (n == 0) {	/* a literal '{' in Python */
					w_atom(&x, 1, 1);
					ap_buf_adds(&x.out, "\\{");
					x.i++;
					can_repeat = true;
					repeated = false;
					top_start = false;
					break;
				}
				if (hi >= 0 && lo > hi) {
					x.cause = ap_xstrdup("min repeat greater "
					    "than max repeat");
					x.at = x.i;
					goto fail;
				}
			} else
				n = 1;
			if (repeated) {
				x.cause = ap_xstrdup("multiple repeat");
				x.at = x.i;
				goto fail;
			}
			if (!can_repeat) {
				x.cause = ap_xstrdup("nothing to repeat");
				x.at = x.i;
				goto fail;
			}
			if (c == '{')
				w_repeat(&x, lo, hi);
			else
				w_repeat(&x, c == '+' ? 1 : 0, c == '?' ? 1 : -1);
			if (c == '{') {
				if (hi < 0)
					ap_buf_printf(&x.out, "{%ld,}", lo);
				else if (lo == hi && py[x.i + n - 2] != ',' &&
				    memchr(py + x.i, ',', n) == NULL)
					ap_buf_printf(&x.out, "{%ld}", lo);
				else
					ap_buf_printf(&x.out, "{%ld,%ld}", lo, hi);
			} else
				ap_buf_addc(&x.out, c);
			x.i += n;
			/* lazy or possessive suffix */
			if (x.i < x.len && (py[x.i] == '?' || py[x.i] == '+'))
				ap_buf_addc(&x.out, py[x.i++]);
			repeated = true;
			break;
		case '^': case '$':
			w_atom(&x, 0, 0);
			ap_buf_addc(&x.out, c);
			x.i++;
			can_repeat = false;	/* Python: "^*" is nothing to repeat */
			repeated = false;
			top_start = false;
			break;
		default: {
			/* literal (whole UTF-8 sequence) or '.' */
			long cp;
			size_t cl = utf8_decode(py + x.i, x.len - x.i, &cp);
			int g = case_group(cp);

			if (g >= 0 && x.ci[x.depth])
				ap_buf_printf(&x.out, "[%s]", case_groups[g].set);
			else
				ap_buf_add(&x.out, py + x.i, cl);
			w_atom(&x, 1, 1);
			x.i += cl;
			can_repeat = true;
			repeated = false;
			top_start = false;
			break;
		}
		}
	}
	if (x.depth != 0) {
		x.cause = ap_xstrdup("missing ), unterminated subpattern");
		x.at = x.len;
		goto fail;
	}
	if (x.max_cond_ref > x.groups) {
		x.cause = ap_xprintf("invalid group reference %d", x.max_cond_ref);
		x.at = x.max_cond_at;
		goto fail;
	}
	free(x.names);
	free(x.gw);
	*ci_backref = x.ci_backref;
	return ap_buf_steal(&x.out, NULL);
fail:
	free(x.names);
	free(x.gw);
	ap_buf_cleanup(&x.out);
	if (cause != NULL)
		*cause = x.cause;
	else
		free(x.cause);
	if (offset != NULL)
		*offset = x.at;
	return NULL;
}

char *
filter_translate(const char *py, char **cause, size_t *offset)
{
	bool ci_backref;

	return translate(py, cause, offset, &ci_backref);
}

/* ---- sets ---------------------------------------------------------- */

struct filter_list {
	struct filter_pattern *v;
	size_t n, cap;
	size_t run;		/* patterns at the end of v from the last one's
				 * source: the list as written in one place */
};

struct filter_key {
	char *key;
	struct filter_list inc, exc;
};

struct filter_set {
	struct filter_key *keys;
	size_t nkeys;
	pcre2_compile_context *cctx;
	pcre2_match_context *mctx;
	pcre2_match_data *md;
	pcre2_jit_stack *jit_stack;
	bool check_only;	/* compile to check, never to match: no JIT */
	size_t xl_bytes;	/* translated pattern bytes compiled so far */
};

/*
 * The pattern as quoted in a message (a new string): whole when short,
 * else its first FILTER_QUOTE_MAX bytes (never half a UTF-8 character)
 * and how long it is: 'iiii…' (4090 bytes).
 */
static char *
quote_pattern(const char *pattern)
{
	size_t len = strlen(pattern), cut = FILTER_QUOTE_MAX;

	if (len <= FILTER_QUOTE_MAX)
		return ap_xprintf("'%s'", pattern);
	while (cut > 0 && ((unsigned char)pattern[cut] & 0xc0) == 0x80)
		cut--;
	return ap_xprintf("'%.*s…' (%zu bytes)", (int)cut, pattern, len);
}

void
filter_set_check_only(struct filter_set *fs)
{
	fs->check_only = true;
}

struct filter_set *
filter_set_create(void)
{
	struct filter_set *fs = ap_xcalloc(1, sizeof *fs);

	fs->cctx = pcre2_compile_context_create(NULL);
	fs->mctx = pcre2_match_context_create(NULL);
	fs->md = pcre2_match_data_create(1, NULL);
	if (fs->cctx == NULL || fs->mctx == NULL || fs->md == NULL)
		ap_fatal("out of memory");
	/* Python's '.', '$' and (?m) know only '\n' as a line end. */
	pcre2_set_newline(fs->cctx, PCRE2_NEWLINE_LF);
	pcre2_set_bsr(fs->cctx, PCRE2_BSR_UNICODE);
	pcre2_set_match_limit(fs->mctx, FILTER_MATCH_LIMIT);
	pcre2_set_depth_limit(fs->mctx, FILTER_DEPTH_LIMIT);
	fs->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
	if (fs->jit_stack != NULL)
		pcre2_jit_stack_assign(fs->mctx, NULL, fs->jit_stack);
	return fs;
}

static void
list_cleanup(struct filter_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].pattern);
		free(l->v[i].source);
		pcre2_code_free(l->v[i].code);
	}
	free(l->v);
}

void
filter_set_free(struct filter_set *fs)
{
	size_t i;

	if (fs == NULL)
		return;
	for (i = 0; i < fs->nkeys; i++) {
		free(fs->keys[i].key);
		list_cleanup(&fs->keys[i].inc);
		list_cleanup(&fs->keys[i].exc);
	}
	free(fs->keys);
	pcre2_match_data_free(fs->md);
	pcre2_match_context_free(fs->mctx);
	pcre2_compile_context_free(fs->cctx);
	if (fs->jit_stack != NULL)
		pcre2_jit_stack_free(fs->jit_stack);
	free(fs);
}

static struct filter_key *
find_key(const struct filter_set *fs, const char *key)
{
	size_t i;

	for (i = 0; i < fs->nkeys; i++)
		if (strcmp(fs->keys[i].key, key) == 0)
			return &fs->keys[i];
	return NULL;
}

int
filter_set_add(struct filter_set *fs, const char *key, bool exclude,
    const char *pattern, enum filter_origin origin, const char *source,
    char **cause)
{
	return filter_set_add_at(fs, key, exclude, pattern, origin, source,
	    SIZE_MAX, cause);
}

int
filter_set_add_at(struct filter_set *fs, const char *key, bool exclude,
    const char *pattern, enum filter_origin origin, const char *source,
    size_t list_at, char **cause)
{
	struct filter_key *k = find_key(fs, key);
	struct filter_list *l;
	struct filter_pattern *fp;
	char *xl, *q, *why = NULL;
	size_t at = 0, idx, len, xlen, run;
	pcre2_code *code;
	int err;
	bool jit, ci_backref = false;
	PCRE2_SIZE eoff;
	PCRE2_UCHAR msg[256];
	/* Where the user wrote it: a service's patterns are in its
	 * connection's config. */
	const char *in = origin == FILTER_ORIGIN_SERVICE ? "connection.config." :
	    "";

	l = k == NULL ? NULL : exclude ? &k->exc : &k->inc;
	/*
	 * A source adds its patterns one after the other, so the run of
	 * patterns from this source is its list so far: errors give the
	 * index in the list the user wrote, not in the merged one.
	 */
	run = l != NULL && l->n > 0 && strcmp(l->v[l->n - 1].source,
	    source) == 0 ? l->run + 1 : 1;
	idx = list_at != SIZE_MAX ? list_at : run - 1;
	/* Checked before any work: both bound what one service entity from
	 * a webhook costs to plan on the event loop. */
	len = strlen(pattern);
	if (len > FILTER_MAX_PATTERN_LEN) {
		*cause = ap_xprintf("%s%s.%s[%zu]: pattern of %zu bytes; the limit "
		    "is %u bytes per pattern (%s)", in, key, exclude ? "excludes" :
		    "includes", idx, len, FILTER_MAX_PATTERN_LEN, source);
		return -1;
	}
	if (run > FILTER_MAX_PATTERNS) {
		*cause = ap_xprintf("%s%s.%s: more than %u patterns (%s); the "
		    "limit is %u per list", in, key, exclude ? "excludes" :
		    "includes", FILTER_MAX_PATTERNS, source, FILTER_MAX_PATTERNS);
		return -1;
	}
	xl = translate(pattern, &why, &at, &ci_backref);
	if (xl == NULL) {
		q = quote_pattern(pattern);
		*cause = ap_xprintf("%s%s.%s[%zu]: invalid pattern %s: %s at "
		    "offset %zu (%s)", in, key, exclude ? "excludes" : "includes",
		    idx, q, why, at, source);
		free(q);
		free(why);
		return -1;
	}
	xlen = strlen(xl);
	if (xlen > FILTER_MAX_SET_BYTES - fs->xl_bytes) {
		*cause = ap_xprintf("%s%s.%s[%zu]: the filter's patterns come to "
		    "more than %u KiB once written for PCRE2, the limit (Python's "
		    "case rules spell each 'i' out as a set of 4) (%s)", in, key,
		    exclude ? "excludes" : "includes", idx,
		    FILTER_MAX_SET_BYTES / 1024, source);
		free(xl);
		return -1;
	}
	code = pcre2_compile((PCRE2_SPTR)xl, PCRE2_ZERO_TERMINATED,
	    PCRE2_CASELESS | PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED |
	    0, &err, &eoff, fs->cctx);
	if (code == NULL) {
		pcre2_get_error_message(err, msg, sizeof msg);
		/* The offset is into the translation; for patterns that
		 * needed no rewriting it is the user's own. */
		q = quote_pattern(pattern);
		*cause = ap_xprintf("%s%s.%s[%zu]: invalid pattern %s: %s at "
		    "offset %zu%s (%s)", in, key, exclude ? "excludes" : "includes",
		    idx, q, (const char *)msg,
		    strcmp(xl, pattern) == 0 || eoff <= len ? (size_t)eoff : len,
		    err == PCRE2_ERROR_PATTERN_TOO_LARGE ? "; PCRE2 compiles a"
		    " pattern to at most 64 KiB, and Python's case rules spell each"
		    " 'i' out as a set of 4, which is larger compiled" : "",
		    source);
		free(q);
		free(xl);
		return -1;
	}
	free(xl);
	fs->xl_bytes += xlen;
	jit = !fs->check_only && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
	if (k == NULL) {
		fs->keys = ap_xreallocarray(fs->keys, fs->nkeys + 1, sizeof *fs->keys);
		k = &fs->keys[fs->nkeys++];
		memset(k, 0, sizeof *k);
		k->key = ap_xstrdup(key);
	}
	l = exclude ? &k->exc : &k->inc;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->v = ap_xreallocarray(l->v, l->cap, sizeof *l->v);
	}
	fp = &l->v[l->n++];
	fp->pattern = ap_xstrdup(pattern);
	fp->source = ap_xstrdup(source);
	fp->origin = origin;
	fp->code = code;
	fp->jit = jit;
	fp->backref = ci_backref;
	l->run = run;
	return 0;
}

bool
filter_set_has_key(const struct filter_set *fs, const char *key)
{
	const struct filter_key *k = find_key(fs, key);

	return k != NULL && (k->inc.n > 0 || k->exc.n > 0);
}

size_t
filter_set_includes(const struct filter_set *fs, const char *key,
    const struct filter_pattern **list)
{
	const struct filter_key *k = find_key(fs, key);

	if (list != NULL)
		*list = k != NULL ? k->inc.v : NULL;
	return k != NULL ? k->inc.n : 0;
}

size_t
filter_set_excludes(const struct filter_set *fs, const char *key,
    const struct filter_pattern **list)
{
	const struct filter_key *k = find_key(fs, key);

	if (list != NULL)
		*list = k != NULL ? k->exc.v : NULL;
	return k != NULL ? k->exc.n : 0;
}

/* 1 match, 0 no match, -1 error (*cause set). */
/*
 * Characters a backreference compares differently under IGNORECASE: Python
 * takes two as the same when their simple lowercase is the same, PCRE2 when
 * they fold to the same (its caseless sets), and these pairs are the same to
 * one and not to the other (U+0130 and 'i' to Python only; 's' and U+017F,
 * U+03C3 and U+03C2 to PCRE2 only). Found by comparing the two over every
 * pair of case-related characters; tests/it_filter_diff.py checks it.
 */
static const struct {
	uint32_t a, b;
} backref_pairs[] = {
	{ 0x0049, 0x0130 }, { 0x0053, 0x017f }, { 0x0069, 0x0130 },
	{ 0x0073, 0x017f }, { 0x00b5, 0x039c }, { 0x00b5, 0x03bc },
	{ 0x0345, 0x0399 }, { 0x0345, 0x03b9 }, { 0x0345, 0x1fbe },
	{ 0x0392, 0x03d0 }, { 0x0395, 0x03f5 }, { 0x0398, 0x03d1 },
	{ 0x0399, 0x1fbe }, { 0x039a, 0x03f0 }, { 0x03a0, 0x03d6 },
	{ 0x03a1, 0x03f1 }, { 0x03a3, 0x03c2 }, { 0x03a6, 0x03d5 },
	{ 0x03b2, 0x03d0 }, { 0x03b5, 0x03f5 }, { 0x03b8, 0x03d1 },
	{ 0x03b9, 0x1fbe }, { 0x03ba, 0x03f0 }, { 0x03c0, 0x03d6 },
	{ 0x03c1, 0x03f1 }, { 0x03c2, 0x03c3 }, { 0x03c6, 0x03d5 },
	{ 0x03d1, 0x03f4 }, { 0x0412, 0x1c80 }, { 0x0414, 0x1c81 },
	{ 0x041e, 0x1c82 }, { 0x0421, 0x1c83 }, { 0x0422, 0x1c84 },
	{ 0x0422, 0x1c85 }, { 0x042a, 0x1c86 }, { 0x0432, 0x1c80 },
	{ 0x0434, 0x1c81 }, { 0x043e, 0x1c82 }, { 0x0441, 0x1c83 },
	{ 0x0442, 0x1c84 }, { 0x0442, 0x1c85 }, { 0x044a, 0x1c86 },
	{ 0x0462, 0x1c87 }, { 0x0463, 0x1c87 }, { 0x1c84, 0x1c85 },
	{ 0x1c88, 0xa64a }, { 0x1c88, 0xa64b }, { 0x1e60, 0x1e9b },
	{ 0x1e61, 0x1e9b },
};

/* The name (valid UTF-8) holds code point cp. */
static bool
name_has(const char *name, size_t len, uint32_t cp)
{
	size_t i = 0, n;
	long c;

	while (i < len) {
		n = utf8_decode(name + i, len - i, &c);
		if ((uint32_t)c == cp)
			return true;
		i += n;
	}
	return false;
}

/* A pair of backref_pairs that the name holds both of (first in *a, *b), so
 * that a backreference may decide it unlike Python. */
static bool
backref_doubt(const char *name, size_t len, uint32_t *a, uint32_t *b)
{
	size_t i;

	for (i = 0; i < len && (unsigned char)name[i] < 0x80; i++)
		;
	if (i == len)
		return false;	/* ASCII: every pair has a character past it */
	for (i = 0; i < AP_ARRAY_LEN(backref_pairs); i++) {
		if (name_has(name, len, backref_pairs[i].b) &&
		    name_has(name, len, backref_pairs[i].a)) {
			*a = backref_pairs[i].a;
			*b = backref_pairs[i].b;
			return true;
		}
	}
	return false;
}

static int
run_one(struct filter_set *fs, const struct filter_pattern *fp,
    const char *name, size_t len, char **cause)
{
	int rc;
	char *q;
	PCRE2_UCHAR msg[256];
	uint32_t a, b;

	if (fp->backref && backref_doubt(name, len, &a, &b)) {
		q = quote_pattern(fp->pattern);
		*cause = ap_xprintf("pattern %s (%s): it has a backreference, and"
		    " the name holds U+%04X and U+%04X, which Python's IGNORECASE"
		    " compares in a backreference unlike PCRE2 (Python by simple"
		    " lowercase): the name cannot be decided as OpenMetadata"
		    " would", q, fp->source, (unsigned)a, (unsigned)b);
		free(q);
		return -1;
	}
	/* The name was checked once for UTF-8 by the caller. */
	if (fp->jit)
		rc = pcre2_jit_match(fp->code, (PCRE2_SPTR)name, len, 0, 0,
		    fs->md, fs->mctx);
	else
		rc = pcre2_match(fp->code, (PCRE2_SPTR)name, len, 0,
		    PCRE2_NO_UTF_CHECK, fs->md, fs->mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	pcre2_get_error_message(rc, msg, sizeof msg);
	q = quote_pattern(fp->pattern);
	*cause = ap_xprintf("pattern %s (%s): %s", q, fp->source,
	    (const char *)msg);
	free(q);
	return -1;
}

static bool
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + len;

	while (p < e) {
		unsigned c = *p;
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else
			return false;
		if ((size_t)(e - p) <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 ||
		    cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

int
filter_set_match(struct filter_set *fs, const char *key, const char *name,
    size_t len, struct filter_decision *d, char **cause)
{
	const struct filter_key *k;
	size_t i;
	int rc;

	memset(d, 0, sizeof *d);
	if (len == 0) {
		d->rule = FILTER_RULE_EMPTY;
		return 0;
	}
	k = find_key(fs, key);
	if (k == NULL || (k->inc.n == 0 && k->exc.n == 0)) {
		d->kept = true;
		d->rule = FILTER_RULE_NONE;
		return 0;
	}
	if (!utf8_valid(name, len)) {
		*cause = ap_xstrdup("name is not valid UTF-8");
		return -1;
	}
	if (k->inc.n > 0) {
		for (i = 0; i < k->inc.n; i++) {
			rc = run_one(fs, &k->inc.v[i], name, len, cause);
			if (rc < 0)
				return -1;
			if (rc == 1)
				break;
		}
		if (i == k->inc.n) {
			d->rule = FILTER_RULE_NO_INCLUDE;
			return 0;
		}
		d->pattern = &k->inc.v[i];
	}
	for (i = 0; i < k->exc.n; i++) {
		rc = run_one(fs, &k->exc.v[i], name, len, cause);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			d->rule = FILTER_RULE_EXCLUDE;
			d->pattern = &k->exc.v[i];
			return 0;
		}
	}
	d->kept = true;
	d->rule = k->inc.n > 0 ? FILTER_RULE_INCLUDE : FILTER_RULE_NO_EXCLUDE;
	return 0;
}
