/*
 * json.c — strict RFC 8259 parser producing a flat array of values (see json.h).
 *
 * Recursive descent bounded by JSON_MAX_DEPTH. Every read goes through parser_peek, which
 * returns -1 at the end of the text, so no path can read past the buffer.
 */
#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_MAX_LEN 64   /* longest number literal accepted (the header needs ~25) */

typedef struct parser {
    const char *text;
    size_t len;
    size_t pos;
    json_doc *doc;
    json_error *err;
    json_status status;
} parser;

static int parse_value(parser *ps, int depth);

/* ---------------------------------------------------------------------------------------
 * Reading and failing
 */

/* Byte at pos + ahead, or -1 past the end. */
static int parser_peek(const parser *ps, size_t ahead) {
    if (ahead >= ps->len - ps->pos) return -1;
    return (unsigned char)ps->text[ps->pos + ahead];
}

/* Record a syntax error at byte offset `at`. Returns 0 so callers can `return parser_fail(...)`. */
static int parser_fail_at(parser *ps, size_t at, const char *message) {
    ps->status = JSON_ERR_SYNTAX;
    ps->err->offset = at;
    snprintf(ps->err->message, sizeof ps->err->message, "%s", message);
    return 0;
}

static int parser_fail(parser *ps, const char *message) {
    return parser_fail_at(ps, ps->pos, message);
}

static void parser_skip_space(parser *ps) {
    for (;;) {
        int c = parser_peek(ps, 0);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        ps->pos++;
    }
}

/* Append a value of this type starting at pos. Returns its index, or JSON_NONE (error set). */
static json_ref parser_push(parser *ps, json_type type) {
    json_doc *doc = ps->doc;
    if (doc->n_values == doc->cap) {
        uint32_t cap = doc->cap ? doc->cap : 256;
        if (cap > UINT32_MAX / 2 - 1) {
            parser_fail(ps, "too many values");
            return JSON_NONE;
        }
        cap *= 2;
        json_value *grown = realloc(doc->values, (size_t)cap * sizeof *grown);
        if (!grown) {
            ps->status = JSON_ERR_NOMEM;
            ps->err->offset = ps->pos;
            snprintf(ps->err->message, sizeof ps->err->message, "out of memory");
            return JSON_NONE;
        }
        doc->values = grown;
        doc->cap = cap;
    }
    json_ref v = doc->n_values++;
    doc->values[v] = (json_value){.type = type, .start = (uint32_t)ps->pos};
    return v;
}

/* ---------------------------------------------------------------------------------------
 * Strings
 */

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Read the 4 hex digits of a \u escape at p[0..3] (within n bytes). Returns the code unit or -1. */
static long hex4_read(const char *p, size_t n) {
    if (n < 4) return -1;
    long u = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value((unsigned char)p[i]);
        if (h < 0) return -1;
        u = u * 16 + h;
    }
    return u;
}

/*
 * Decode one escape sequence starting at the backslash p[0] (n bytes available).
 * Stores the code point in *cp and the bytes consumed in *used. Returns 0 with a message in
 * *why on a bad escape (unknown letter, bad hex, unpaired surrogate).
 */
static int escape_decode(const char *p, size_t n, long *cp, size_t *used, const char **why) {
    static const char SIMPLE_FROM[] = "\"\\/bfnrt";
    static const char SIMPLE_TO[] = "\"\\/\b\f\n\r\t";
    if (n < 2) { *why = "unterminated escape"; return 0; }
    const char *hit = memchr(SIMPLE_FROM, p[1], sizeof SIMPLE_FROM - 1);
    if (hit) {
        *cp = (unsigned char)SIMPLE_TO[hit - SIMPLE_FROM];
        *used = 2;
        return 1;
    }
    if (p[1] != 'u') { *why = "invalid escape"; return 0; }
    long u = hex4_read(p + 2, n - 2);
    if (u < 0) { *why = "invalid \\u escape"; return 0; }
    if (u >= 0xDC00 && u <= 0xDFFF) { *why = "unpaired low surrogate"; return 0; }
    if (u < 0xD800 || u > 0xDBFF) { *cp = u; *used = 6; return 1; }
    /* high surrogate: a \uDC00-\uDFFF escape must follow */
    long lo = (n >= 8 && p[6] == '\\' && p[7] == 'u') ? hex4_read(p + 8, n - 8) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF) { *why = "unpaired high surrogate"; return 0; }
    *cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    *used = 12;
    return 1;
}

/* Length of the valid UTF-8 sequence at p (n bytes available) starting with a byte >= 0x80, or 0. */
static size_t utf8_sequence_len(const unsigned char *p, size_t n) {
    size_t need;
    uint32_t cp, min;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) { need = 2; cp = p[0] & 0x1Fu; min = 0x80; }
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) { need = 3; cp = p[0] & 0x0Fu; min = 0x800; }
    else if (p[0] >= 0xF0 && p[0] <= 0xF4) { need = 4; cp = p[0] & 0x07u; min = 0x10000; }
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0u) != 0x80u) return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return need;
}

/* Parse a string starting at its opening quote. Records it as a JSON_STRING value. */
static int parse_string(parser *ps) {
    size_t quote = ps->pos;
    ps->pos++;
    json_ref v = parser_push(ps, JSON_STRING);
    if (v == JSON_NONE) return 0;
    int escaped = 0;
    for (;;) {
        int c = parser_peek(ps, 0);
        if (c < 0) return parser_fail_at(ps, quote, "unterminated string");
        if (c == '"') break;
        if (c < 0x20) return parser_fail(ps, "control character in string");
        size_t step = 1;
        if (c == '\\') {
            long cp;
            const char *why = NULL;
            if (!escape_decode(ps->text + ps->pos, ps->len - ps->pos, &cp, &step, &why))
                return parser_fail(ps, why);
            escaped = 1;
        } else if (c >= 0x80) {
            step = utf8_sequence_len((const unsigned char *)ps->text + ps->pos, ps->len - ps->pos);
            if (step == 0) return parser_fail(ps, "invalid UTF-8 in string");
        }
        ps->pos += step;
    }
    json_value *val = &ps->doc->values[v];
    val->len = (uint32_t)(ps->pos - val->start);
    val->escaped = (uint32_t)escaped;
    ps->pos++; /* closing quote */
    val->next = ps->doc->n_values;
    return 1;
}

/* Encode code point cp (<= 0x10FFFF) as UTF-8 into out[4]. Returns the byte count. */
static size_t utf8_encode(long cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decode the next piece of a string's raw bytes raw[*i .. n) into out[4]: one plain byte,
 * or one escape's UTF-8 bytes. Advances *i. Returns the bytes written (0 at the end).
 * The string was validated by parse_string, so escapes are well formed; a malformed one
 * (impossible after validation) is emitted as its backslash, never read past n.
 */
static size_t string_piece(const char *raw, size_t n, size_t *i, char out[4]) {
    if (*i >= n) return 0;
    if (raw[*i] != '\\') {
        out[0] = raw[(*i)++];
        return 1;
    }
    long cp;
    size_t used;
    const char *why;
    if (!escape_decode(raw + *i, n - *i, &cp, &used, &why)) {
        out[0] = raw[(*i)++];
        return 1;
    }
    *i += used;
    return utf8_encode(cp, out);
}

/* ---------------------------------------------------------------------------------------
 * Numbers and literals
 */

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Advance over a run of digits; returns how many. */
static size_t parser_skip_digits(parser *ps) {
    size_t n = 0;
    while (is_digit(parser_peek(ps, 0))) { ps->pos++; n++; }
    return n;
}

/*
 * strtod on a literal already checked against the JSON grammar, independent of the C
 * locale: the '.' is swapped for the locale's decimal point first.
 */
static double number_convert(const char *lit, size_t n) {
    char buf[NUMBER_MAX_LEN + 16];
    const char *point = localeconv()->decimal_point;
    if (!point || !*point || strlen(point) > 8) point = ".";
    size_t point_len = strlen(point);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (lit[i] == '.') {
            memcpy(buf + k, point, point_len);
            k += point_len;
        } else {
            buf[k++] = lit[i];
        }
    }
    buf[k] = '\0';
    return strtod(buf, NULL);
}

/* Parse a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(parser *ps) {
    json_ref v = parser_push(ps, JSON_NUMBER);
    if (v == JSON_NONE) return 0;
    size_t start = ps->pos;
    if (parser_peek(ps, 0) == '-') ps->pos++;
    if (parser_peek(ps, 0) == '0') ps->pos++;
    else if (parser_skip_digits(ps) == 0) return parser_fail(ps, "invalid number");
    if (parser_peek(ps, 0) == '.') {
        ps->pos++;
        if (parser_skip_digits(ps) == 0) return parser_fail(ps, "digit expected after '.'");
    }
    if (parser_peek(ps, 0) == 'e' || parser_peek(ps, 0) == 'E') {
        ps->pos++;
        if (parser_peek(ps, 0) == '+' || parser_peek(ps, 0) == '-') ps->pos++;
        if (parser_skip_digits(ps) == 0) return parser_fail(ps, "digit expected in exponent");
    }
    size_t n = ps->pos - start;
    if (n > NUMBER_MAX_LEN) return parser_fail_at(ps, start, "number literal too long");
    double d = number_convert(ps->text + start, n);
    if (!isfinite(d)) return parser_fail_at(ps, start, "number out of range");
    json_value *val = &ps->doc->values[v];
    val->len = (uint32_t)n;
    val->number = d;
    val->next = ps->doc->n_values;
    return 1;
}

/* Parse `true`, `false` or `null`. */
static int parse_literal(parser *ps, const char *word, json_type type) {
    size_t n = strlen(word);
    if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0)
        return parser_fail(ps, "invalid literal");
    json_ref v = parser_push(ps, type);
    if (v == JSON_NONE) return 0;
    ps->pos += n;
    ps->doc->values[v].len = (uint32_t)n;
    ps->doc->values[v].next = ps->doc->n_values;
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Containers
 */

/* After an element or member: consume ',' (returns 1, more follow) or `close` (returns 2). */
static int parser_after_item(parser *ps, char close, const char *message) {
    parser_skip_space(ps);
    int c = parser_peek(ps, 0);
    if (c == ',') { ps->pos++; return 1; }
    if (c == close) { ps->pos++; return 2; }
    return parser_fail(ps, message);
}

static int parse_array(parser *ps, int depth) {
    json_ref v = parser_push(ps, JSON_ARRAY);
    if (v == JSON_NONE) return 0;
    ps->pos++; /* '[' */
    uint32_t count = 0;
    parser_skip_space(ps);
    if (parser_peek(ps, 0) == ']') {
        ps->pos++;
    } else {
        for (;;) {
            if (!parse_value(ps, depth + 1)) return 0;
            count++;
            int r = parser_after_item(ps, ']', "expected ',' or ']'");
            if (r == 0) return 0;
            if (r == 2) break;
        }
    }
    ps->doc->values[v].count = count;
    ps->doc->values[v].next = ps->doc->n_values;
    return 1;
}

/* Parse one `"key": value` member of an object. */
static int parse_member(parser *ps, int depth) {
    parser_skip_space(ps);
    if (parser_peek(ps, 0) != '"') return parser_fail(ps, "expected a string key");
    if (!parse_string(ps)) return 0;
    parser_skip_space(ps);
    if (parser_peek(ps, 0) != ':') return parser_fail(ps, "expected ':'");
    ps->pos++;
    return parse_value(ps, depth + 1);
}

static int parse_object(parser *ps, int depth) {
    json_ref v = parser_push(ps, JSON_OBJECT);
    if (v == JSON_NONE) return 0;
    ps->pos++; /* '{' */
    uint32_t count = 0;
    parser_skip_space(ps);
    if (parser_peek(ps, 0) == '}') {
        ps->pos++;
    } else {
        for (;;) {
            if (!parse_member(ps, depth)) return 0;
            count++;
            int r = parser_after_item(ps, '}', "expected ',' or '}'");
            if (r == 0) return 0;
            if (r == 2) break;
        }
    }
    ps->doc->values[v].count = count;
    ps->doc->values[v].next = ps->doc->n_values;
    return 1;
}

/* Parse any value at pos (after optional whitespace). depth counts enclosing containers. */
static int parse_value(parser *ps, int depth) {
    if (depth > JSON_MAX_DEPTH) return parser_fail(ps, "nesting too deep");
    parser_skip_space(ps);
    int c = parser_peek(ps, 0);
    switch (c) {
    case '{': return parse_object(ps, depth);
    case '[': return parse_array(ps, depth);
    case '"': return parse_string(ps);
    case 't': return parse_literal(ps, "true", JSON_TRUE);
    case 'f': return parse_literal(ps, "false", JSON_FALSE);
    case 'n': return parse_literal(ps, "null", JSON_NULL);
    case -1: return parser_fail(ps, "unexpected end of text");
    default:
        if (c == '-' || is_digit(c)) return parse_number(ps);
        return parser_fail(ps, "unexpected character");
    }
}

json_status json_parse(json_doc *doc, const char *text, size_t len, json_error *err) {
    *doc = (json_doc){.text = text, .text_len = len};
    err->offset = 0;
    err->message[0] = '\0';
    parser ps = {.text = text, .len = len, .doc = doc, .err = err, .status = JSON_OK};
    if (len >= UINT32_MAX) {
        parser_fail(&ps, "text too long");
    } else if (parse_value(&ps, 0)) {
        parser_skip_space(&ps);
        if (ps.pos != len) parser_fail(&ps, "trailing characters after the value");
    }
    if (ps.status == JSON_OK) return JSON_OK;
    json_free(doc);
    return ps.status;
}

void json_free(json_doc *doc) {
    free(doc->values);
    doc->values = NULL;
    doc->n_values = doc->cap = 0;
}

/* ---------------------------------------------------------------------------------------
 * Access
 */

static const json_value *value_at(const json_doc *doc, json_ref v) {
    return v < doc->n_values ? &doc->values[v] : NULL;
}

json_type json_type_of(const json_doc *doc, json_ref v) {
    const json_value *val = value_at(doc, v);
    return val ? val->type : JSON_NULL;
}

uint32_t json_count(const json_doc *doc, json_ref v) {
    const json_value *val = value_at(doc, v);
    return (val && (val->type == JSON_ARRAY || val->type == JSON_OBJECT)) ? val->count : 0;
}

json_ref json_first(const json_doc *doc, json_ref v) {
    return json_count(doc, v) > 0 ? v + 1 : JSON_NONE;
}

json_ref json_next(const json_doc *doc, json_ref v) {
    const json_value *val = value_at(doc, v);
    return val ? val->next : JSON_NONE;
}

json_ref json_get(const json_doc *doc, json_ref obj, const char *key) {
    if (json_type_of(doc, obj) != JSON_OBJECT) return JSON_NONE;
    json_ref found = JSON_NONE;
    json_ref k = json_first(doc, obj);
    for (uint32_t i = 0; i < doc->values[obj].count; i++) {
        json_ref value = json_next(doc, k);
        if (json_string_eq(doc, k, key)) found = value;
        k = json_next(doc, value);
    }
    return found;
}

int json_string_eq(const json_doc *doc, json_ref v, const char *s) {
    const json_value *val = value_at(doc, v);
    if (!val || val->type != JSON_STRING) return 0;
    const char *raw = doc->text + val->start;
    size_t n = strlen(s);
    if (!val->escaped) return val->len == n && memcmp(raw, s, n) == 0;
    size_t i = 0, matched = 0, got;
    char piece[4];
    while ((got = string_piece(raw, val->len, &i, piece)) > 0) {
        if (got > n - matched || memcmp(piece, s + matched, got) != 0) return 0;
        matched += got;
    }
    return matched == n;
}

size_t json_string_decode(const json_doc *doc, json_ref v, char *out, size_t cap) {
    const json_value *val = value_at(doc, v);
    if (!val || val->type != JSON_STRING || cap == 0) return SIZE_MAX;
    const char *raw = doc->text + val->start;
    size_t i = 0, n = 0, got;
    char piece[4];
    while ((got = string_piece(raw, val->len, &i, piece)) > 0) {
        if (got >= cap - n) return SIZE_MAX; /* keep room for the NUL */
        memcpy(out + n, piece, got);
        n += got;
    }
    out[n] = '\0';
    return n;
}

int json_get_double(const json_doc *doc, json_ref v, double *out) {
    const json_value *val = value_at(doc, v);
    if (!val || val->type != JSON_NUMBER) return 0;
    *out = val->number;
    return 1;
}

/* Exact value of an integer literal ("-"? digits, no fraction or exponent), or 0 if it is not one. */
static int integer_literal(const char *p, size_t n, int64_t *out) {
    size_t i = (n > 0 && p[0] == '-') ? 1 : 0;
    if (i == n) return 0;
    uint64_t mag = 0;
    const uint64_t limit = i ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit((unsigned char)p[i])) return 0;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (mag > (limit - d) / 10) return 0;
        mag = mag * 10 + d;
    }
    if (p[0] == '-') *out = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
    else *out = (int64_t)mag;
    return 1;
}

int json_get_int(const json_doc *doc, json_ref v, int64_t *out) {
    const json_value *val = value_at(doc, v);
    if (!val || val->type != JSON_NUMBER) return 0;
    if (integer_literal(doc->text + val->start, val->len, out)) return 1;
    /* "4096.0" or "4e3": accept when integral and exactly representable (|x| <= 2^53). */
    double d = val->number;
    if (d != floor(d) || fabs(d) > 9007199254740992.0) return 0;
    *out = (int64_t)d;
    return 1;
}
