/*
 * INCRBYFLOAT and HINCRBYFLOAT arithmetic as Redis does it: C's `long double` (x87 80-bit on
 * x86_64, binary128 on aarch64, as Redis gets on each), parsed with strtold as Redis's
 * string2ld does and printed with "%.17Lf" less trailing zeros as its ld2string does in
 * LD_STR_HUMAN mode. Rust has no long double, so these few lines are C; src/server/cmd/float.rs
 * is the only caller.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS: the longest text read or written. */
#define QUIPU_LD_CHARS (5 * 1024)

/* 1 and the value in *out when s[0..len) is a float as Redis's string2ld reads one. */
static int parse_ld(const unsigned char *s, size_t len, long double *out) {
    char buf[QUIPU_LD_CHARS];
    char *end;
    long double v;
    /* An embedded NUL would end strtold's reading early: not a float. */
    if (len == 0 || len >= sizeof(buf) || memchr(s, 0, len) != NULL) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtold(buf, &end);
    if (isspace((unsigned char)buf[0]) || end[0] != '\0' ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) ||
        isnan(v))
        return 0;
    *out = v;
    return 1;
}

/* 0: not a float; 1: a finite float; 2: an infinite one. */
int quipu_ld_check(const unsigned char *s, size_t len) {
    long double v;
    if (!parse_ld(s, len, &v)) return 0;
    return isinf(v) ? 2 : 1;
}

/*
 * Adds the float `by` to `cur` (0 when has_cur is 0) and writes the sum's text into out.
 * Returns its length, or -1 when cur is not a float, -2 when by is not, -3 when the sum is
 * NaN or infinite, -4 when out has no room.
 */
long quipu_ld_add(const unsigned char *cur, size_t cur_len, int has_cur,
                  const unsigned char *by, size_t by_len, char *out, size_t out_len) {
    long double a = 0, b, sum;
    int n;
    if (has_cur && !parse_ld(cur, cur_len, &a)) return -1;
    if (!parse_ld(by, by_len, &b)) return -2;
    sum = a + b;
    if (isnan(sum) || isinf(sum)) return -3;
    n = snprintf(out, out_len, "%.17Lf", sum);
    if (n < 0 || (size_t)n + 1 > out_len) return -4;
    if (memchr(out, '.', (size_t)n) != NULL) {
        while (out[n - 1] == '0') n--;
        if (out[n - 1] == '.') n--;
    }
    if (n == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        n = 1;
    }
    return n;
}
