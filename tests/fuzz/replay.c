/*
 * replay.c - run a fuzz target over its corpus without libFuzzer, as a
 * TAP test: every file in CORPUS_DIR (and any path given on the command
 * line) is fed to LLVMFuzzerTestOneInput once.  This is how `make check`
 * keeps every input the fuzzers ever found (and the seeds) as regression
 * tests, under whatever sanitizers the build uses.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0) {
        if (fp)
            fclose(fp);
        return -1;
    }
    rewind(fp);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    char path[4096];
    struct dirent *de;
    DIR *dir;
    int n = 0, failed = 0, i;

    for (i = 1; i < argc; ++i) {
        int r = replay(argv[i]);
        printf("%sok %d - %s\n", r == 0 ? "" : "not ", ++n, argv[i]);
        failed += r != 0;
    }
    if (argc == 1) {
        if ((dir = opendir(CORPUS_DIR)) == NULL) {
            printf("not ok 1 - cannot open %s\n1..1\n", CORPUS_DIR);
            return 1;
        }
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, de->d_name);
            int r = replay(path);
            printf("%sok %d - replays %s\n", r == 0 ? "" : "not ", ++n, de->d_name);
            failed += r != 0;
        }
        closedir(dir);
    }
    if (n == 0)
        printf("not ok 1 - empty corpus %s\n", CORPUS_DIR), n = 1, failed = 1;
    printf("1..%d\n", n);
    return failed != 0;
}
