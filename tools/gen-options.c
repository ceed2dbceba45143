/*
 * gen-options.c - print the OPTIONS list of kvsd(8) from config_options[].
 *
 * The same table drives parsing and `kvsd --help`; generating the man
 * page's list from it means the three cannot drift.  tools/update-man.sh
 * puts the output between the GENERATED OPTIONS markers of man/kvsd.8 and
 * tests/t/man_help.py fails when the page is stale.  Output is mdoc.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"

/* Write text as roff running text: escape backslashes, spell a minus as
 * \- (so "--address" stays two minus signs), and protect a leading
 * control character. */
static void put_text(const char *s)
{
    size_t i;

    if (*s == '.' || *s == '\'')
        fputs("\\&", stdout);
    for (i = 0; s[i] != '\0'; ++i) {
        if (s[i] == '\\')
            fputs("\\e", stdout);
        else if (s[i] == '-' && (s[i + 1] == '-' || (i > 0 && s[i - 1] == '-')))
            fputs("\\-", stdout);
        else
            putchar(s[i]);
    }
}

static void put_sentence(const char *help)
{
    size_t len = strlen(help);

    if (len == 0)
        return;
    put_text(help);
    if (help[len - 1] != '.')
        putchar('.');
    putchar('\n');
}

int main(void)
{
    size_t i;

    puts(".Bl -tag -width Ds");
    for (i = 0; i != config_noptions; ++i) {
        const struct config_option *o = &config_options[i];

        fputs(".It", stdout);
        if (o->short_flag)
            printf(" Fl %c ,", o->short_flag);
        printf(" Fl \\-%s", o->flag);
        if (o->metavar != NULL)
            printf(" Ar %s", o->metavar);
        putchar('\n');
        put_sentence(o->help);
        if (o->metavar != NULL && o->def != NULL && o->def[0] != '\0')
            printf("The default is\n.Ql %s .\n", o->def);
        if (o->env != NULL) {
            printf("Environment:\n.Ev %s %s\n", o->env, o->metavar ? "." : ";");
            if (o->metavar == NULL)
                puts("1, yes, true or on enables it; 0, no, false, off or empty disables it.");
        }
    }
    puts(".El");
    return 0;
}
