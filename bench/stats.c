/* SPDX-License-Identifier: MIT */
/* Samples, percentiles and figures. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void samples_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		double *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			b_die("out of memory");
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
}

void samples_clear(struct samples *s)
{
	s->n = 0;
}

void samples_free(struct samples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double samples_pct(struct samples *s, double p)
{
	double pos, frac;
	size_t i;

	if (!s->n)
		return NAN;
	qsort(s->v, s->n, sizeof(double), cmp_double);
	/* Linear interpolation between closest ranks. */
	pos = p / 100.0 * (double)(s->n - 1);
	i = (size_t)pos;
	frac = pos - (double)i;
	if (i + 1 >= s->n)
		return s->v[s->n - 1];
	return s->v[i] + frac * (s->v[i + 1] - s->v[i]);
}

double samples_mean(const struct samples *s)
{
	double sum = 0;
	size_t i;

	if (!s->n)
		return NAN;
	for (i = 0; i < s->n; i++)
		sum += s->v[i];
	return sum / (double)s->n;
}

void figure_add_rep(struct figure *f, struct samples *rep)
{
	size_t i;

	if (!rep->n)
		return;
	if (f->nrep < B_MAX_REP)
		f->rep_p50[f->nrep++] = samples_pct(rep, 50);
	for (i = 0; i < rep->n; i++)
		samples_add(&f->all, rep->v[i]);
	samples_clear(rep);
}

/* ---- JSON (the data file, data.c) ---- */
void json_num(FILE *f, double x)
{
	if (isnan(x) || isinf(x))
		fputs("null", f);
	else
		fprintf(f, "%.17g", x); /* round-trips: the renderer sees the double */
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void json_nums(FILE *f, const char *name, const double *v, size_t n)
{
	size_t i;

	fprintf(f, "\"%s\": [", name);
	for (i = 0; i < n; i++) {
		if (i)
			fputs(i % 8 ? ", " : ",\n ", f);
		json_num(f, v[i]);
	}
	fputs("]", f);
}

void json_samples(FILE *f, const char *name, const struct samples *s)
{
	json_nums(f, name, s->v, s->n);
}
