/*
 * A minimal JSON reader for the harness (golden.json): objects, arrays,
 * numbers, strings without escapes beyond \" \\ \/ \n \t, true/false/null.
 * Enough for files written by Python's json module; not a general parser.
 */
#ifndef AV1PART_TEST_JSON_H
#define AV1PART_TEST_JSON_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;

typedef struct JVal {
    JType t;
    double num;          /* J_NUM, J_BOOL (0/1) */
    char *str;           /* J_STR */
    size_t n;            /* J_ARR, J_OBJ: element count */
    struct JVal *items;  /* J_ARR, J_OBJ */
    char **keys;         /* J_OBJ */
} JVal;

typedef struct { const char *p; int err; } JP;

static void j_ws(JP *s) { while (isspace((unsigned char)*s->p)) s->p++; }

static int j_parse(JP *s, JVal *v);

static char *j_string(JP *s) {
    if (*s->p != '"') { s->err = 1; return NULL; }
    s->p++;
    size_t cap = 16, n = 0;
    char *o = malloc(cap);
    if (!o) { s->err = 1; return NULL; }
    while (*s->p && *s->p != '"') {
        char c = *s->p++;
        if (c == '\\') {
            char e = *s->p++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e;
            if (e == 'u') { s->err = 1; break; }
        }
        if (n + 2 > cap) {
            char *t = realloc(o, cap *= 2);
            if (!t) { s->err = 1; break; }
            o = t;
        }
        o[n++] = c;
    }
    if (*s->p != '"') s->err = 1; else s->p++;
    o[n] = '\0';
    return o;
}

static void j_free(JVal *v) {
    if (v->t == J_STR) free(v->str);
    if (v->t == J_ARR || v->t == J_OBJ) {
        for (size_t i = 0; i < v->n; i++) {
            j_free(&v->items[i]);
            if (v->t == J_OBJ) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
    memset(v, 0, sizeof *v);
}

static int j_push(JP *s, JVal *v, size_t *cap) {
    if (v->n + 1 > *cap) {
        *cap = *cap ? *cap * 2 : 8;
        JVal *ni = realloc(v->items, *cap * sizeof *ni);
        if (!ni) { s->err = 1; return -1; }
        v->items = ni;
        if (v->t == J_OBJ) {
            char **nk = realloc(v->keys, *cap * sizeof *nk);
            if (!nk) { s->err = 1; return -1; }
            v->keys = nk;
        }
    }
    memset(&v->items[v->n], 0, sizeof(JVal));
    return 0;
}

static int j_parse(JP *s, JVal *v) {
    memset(v, 0, sizeof *v);
    j_ws(s);
    char c = *s->p;
    if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        char close = c == '{' ? '}' : ']';
        size_t cap = 0;
        s->p++;
        j_ws(s);
        if (*s->p == close) { s->p++; return 0; }
        for (;;) {
            if (j_push(s, v, &cap)) return -1;
            if (v->t == J_OBJ) {
                j_ws(s);
                char *k = j_string(s);
                v->keys[v->n] = k;
                j_ws(s);
                if (s->err || *s->p != ':') { s->err = 1; v->n++; return -1; }
                s->p++;
            }
            j_parse(s, &v->items[v->n]);
            v->n++;
            if (s->err) return -1;
            j_ws(s);
            if (*s->p == ',') { s->p++; continue; }
            if (*s->p == close) { s->p++; return 0; }
            s->err = 1;
            return -1;
        }
    }
    if (c == '"') { v->t = J_STR; v->str = j_string(s); return s->err ? -1 : 0; }
    if (!strncmp(s->p, "true", 4)) { v->t = J_BOOL; v->num = 1; s->p += 4; return 0; }
    if (!strncmp(s->p, "false", 5)) { v->t = J_BOOL; v->num = 0; s->p += 5; return 0; }
    if (!strncmp(s->p, "null", 4)) { v->t = J_NULL; s->p += 4; return 0; }
    char *end;
    v->t = J_NUM;
    v->num = strtod(s->p, &end);
    if (end == s->p) { s->err = 1; return -1; }
    s->p = end;
    return 0;
}

/* Parses text into *out; 0 on success (then j_free(out) when done). */
static int j_load(const char *text, JVal *out) {
    JP s = {text, 0};
    j_parse(&s, out);
    if (s.err) { j_free(out); return -1; }
    return 0;
}

/* Member `key` of object o, or NULL. */
static const JVal *j_get(const JVal *o, const char *key) {
    if (!o || o->t != J_OBJ) return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (o->keys[i] && !strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

#endif /* AV1PART_TEST_JSON_H */
