/*
 * json.h — a small strict JSON parser (RFC 8259) for the model.bin header.
 *
 * json_parse reads the whole text once, checks it completely (grammar, string escapes,
 * UTF-8, number syntax, nesting depth) and records every value in one flat array in
 * document order. Nothing is decoded or copied: a string is a span of the input, decoded
 * only when a caller asks for it, so members the reader does not need (the tokenizer's
 * 1,100 special tokens, its regex) cost one pass and 32 bytes per value.
 *
 * A value is named by its index in the array (a json_ref); the root is 0. An array's
 * elements and an object's members (key, value, key, value, ...) follow their parent
 * directly, and each value records where its subtree ends, so skipping is O(1).
 * The parser never reads outside [text, text + len) and needs no NUL terminator.
 */
#ifndef EDGEMOE_JSON_H
#define EDGEMOE_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64          /* arrays/objects nested deeper are refused */
#define JSON_NONE UINT32_MAX       /* "no such value" */

typedef uint32_t json_ref;

typedef enum json_type {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

/* One parsed value. */
typedef struct json_value {
    json_type type;
    uint32_t start;   /* first byte in the text: a string's first byte after the quote, else the value's first byte */
    uint32_t len;     /* bytes: a string's raw contents (escapes undecoded), a number's literal */
    uint32_t count;   /* array: elements; object: members (key/value pairs) */
    uint32_t next;    /* index just past this value's subtree: its next sibling */
    uint32_t escaped; /* string: 1 if it contains backslash escapes */
    double number;    /* number: its value (finite) */
} json_value;

/* A parsed document. The text must outlive it. */
typedef struct json_doc {
    const char *text;
    size_t text_len;
    json_value *values;   /* [n_values], values[0] is the root */
    uint32_t n_values;
    uint32_t cap;
} json_doc;

typedef enum json_status { JSON_OK = 0, JSON_ERR_SYNTAX = 1, JSON_ERR_NOMEM = 2 } json_status;

/* Where and why a parse failed. */
typedef struct json_error {
    size_t offset;        /* byte offset in the text */
    char message[80];     /* e.g. "expected ',' or '}'" */
} json_error;

/*
 * Parse len bytes of text: one JSON value, optionally surrounded by whitespace.
 * Success: JSON_OK and *doc filled (release with json_free).
 * Failure: JSON_ERR_SYNTAX or JSON_ERR_NOMEM, *doc empty, *err says where and why.
 */
json_status json_parse(json_doc *doc, const char *text, size_t len, json_error *err);

/* Release a document's value array. Safe on an empty or failed document. */
void json_free(json_doc *doc);

/* Type of value v (JSON_NULL if v is JSON_NONE or out of range, so lookups can chain). */
json_type json_type_of(const json_doc *doc, json_ref v);

/* Number of elements of an array or members of an object; 0 for anything else. */
uint32_t json_count(const json_doc *doc, json_ref v);

/* First element of an array / first key of an object, or JSON_NONE if empty or not a container. */
json_ref json_first(const json_doc *doc, json_ref v);

/* The value after v at the same level (v's next sibling; for a key, that is its value). */
json_ref json_next(const json_doc *doc, json_ref v);

/* Value of member `key` of object obj, or JSON_NONE. With duplicate keys the last wins (as in Python). */
json_ref json_get(const json_doc *doc, json_ref obj, const char *key);

/* 1 if v is a string whose decoded bytes equal the NUL-terminated s, else 0. */
int json_string_eq(const json_doc *doc, json_ref v, const char *s);

/*
 * Decode string v into out (room for cap bytes; a string decodes to at most its raw length
 * json_value.len) and NUL-terminate it. Returns the decoded length (which may include
 * embedded NULs from \u0000), or SIZE_MAX if v is not a string or it does not fit.
 */
size_t json_string_decode(const json_doc *doc, json_ref v, char *out, size_t cap);

/* If v is a number with an integral value in int64 range (exact), store it and return 1; else 0. */
int json_get_int(const json_doc *doc, json_ref v, int64_t *out);

/* If v is a number, store it and return 1; else 0. */
int json_get_double(const json_doc *doc, json_ref v, double *out);

#endif /* EDGEMOE_JSON_H */
