#include "slk/common.h"

const char *slk_strerror(int err)
{
    switch (err) {
    case SLK_OK:
        return "success";
#define SLK__ERR_CASE(name, msg)                                                                                       \
    case SLK_E##name:                                                                                                  \
        return msg;
        SLK_ERRNO_MAP(SLK__ERR_CASE)
#undef SLK__ERR_CASE
    default:
        return "unknown error";
    }
}
