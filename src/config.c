/* placeholder: being written */
#include "slk/common.h"
