/*
 * One JSON object per line on stderr: {"ts":"…Z","level":"info","msg":"…",…}.
 * Thread-safe (one write(2) per line).
 */
#ifndef SLK_LOG_H
#define SLK_LOG_H

enum slk_log_level {
    SLK_LOG_DEBUG = 0,
    SLK_LOG_INFO,
    SLK_LOG_WARN,
    SLK_LOG_ERROR,
};

void slk_log_set_level(enum slk_log_level level);
int slk_log_parse_level(const char *s); /* -1 when unknown */

/*
 * kv is a NULL-terminated list of key, value C-string pairs appended as JSON
 * string fields: slk_log(SLK_LOG_INFO, "listening", "addr", "127.0.0.1:8080", NULL).
 */
void slk_log(enum slk_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
