/* Webhook dispatcher: placeholder. */
typedef int slk__outbox_dispatch_placeholder;
