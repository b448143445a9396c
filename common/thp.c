#include "common/thp.h"

#include <stdio.h>
#include <string.h>

bool elm_thp_disabled(void)
{
    char buf[128] = {0};
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return true;
    bool never = fgets(buf, sizeof buf, f) && strstr(buf, "[never]");
    fclose(f);
    return never;
}
