/* The f32 bandwidth probe of scripts/bench/vector-anchors.sh: per query, one pass over the
 * rows x dim f32 matrix computing each row's dot product with the query (16 independent lanes,
 * so gcc -O3 -march=native vectorises it without -ffast-math) and keeping the best row. Anything
 * that reads every f32 of the matrix once takes at least this long.
 *
 * Usage: f32scan base.f32 queries.f32 rows dim queries threads; prints one JSON line with the
 * p50, p99 and mean time per query in ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LANES 16

static const float *base, *query;
static long rows, dim;

struct part { long from, to; float best; long best_row; };

static void *scan(void *arg) {
    struct part *p = arg;
    float best = -1e38f;
    long best_row = -1;
    for (long r = p->from; r < p->to; r++) {
        const float *x = base + r * dim;
        float acc[LANES] = {0};
        long i = 0;
        for (; i + LANES <= dim; i += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += x[i + l] * query[i + l];
        float s = 0;
        for (; i < dim; i++) s += x[i] * query[i];
        for (int l = 0; l < LANES; l++) s += acc[l];
        if (s > best) { best = s; best_row = r; }
    }
    p->best = best;
    p->best_row = best_row;
    return NULL;
}

static float *load(const char *path, long count) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    float *data = malloc(count * sizeof(float));
    if (fread(data, sizeof(float), count, f) != (size_t)count) { fprintf(stderr, "%s: short\n", path); exit(1); }
    fclose(f);
    return data;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: f32scan base.f32 queries.f32 rows dim queries threads\n"); return 2; }
    rows = atol(argv[3]);
    dim = atol(argv[4]);
    long queries = atol(argv[5]);
    int threads = atoi(argv[6]);
    base = load(argv[1], rows * dim);
    const float *qs = load(argv[2], queries * dim);
    double *ms = malloc(queries * sizeof(double));
    long checksum = 0;
    for (long q = -3; q < queries; q++) { /* three warm-up passes */
        query = qs + (q < 0 ? 0 : q) * dim;
        struct part parts[64];
        pthread_t tids[64];
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long size = (rows + threads - 1) / threads;
        for (int t = 0; t < threads; t++) {
            parts[t].from = t * size;
            parts[t].to = (t + 1) * size < rows ? (t + 1) * size : rows;
            if (t > 0) pthread_create(&tids[t], NULL, scan, &parts[t]);
        }
        scan(&parts[0]);
        for (int t = 1; t < threads; t++) pthread_join(tids[t], NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int t = 0; t < threads; t++) checksum += parts[t].best_row;
        if (q >= 0) ms[q] = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    double mean = 0;
    for (long q = 0; q < queries; q++) mean += ms[q] / queries;
    qsort(ms, queries, sizeof(double), cmp);
    long p50 = (long)(queries * 0.50 + 0.999999) - 1, p99 = (long)(queries * 0.99 + 0.999999) - 1;
    printf("{\"name\": \"C f32 scan, %d thread%s\", \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f, \"checksum\": %ld}\n",
           threads, threads == 1 ? "" : "s", ms[p50 < 0 ? 0 : p50], ms[p99 < 0 ? 0 : p99], mean, checksum);
    return 0;
}
