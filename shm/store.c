/* placeholder until the write path lands (being written now) */
#include "store.h"
