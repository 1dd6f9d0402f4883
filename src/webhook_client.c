/* HTTP client for webhooks: placeholder. */
typedef int slk__webhook_client_placeholder;
