"""Tasks as people meet them: the task service, the user-task types, documents (blob store, content sniffing,
the service), who may do what (permissions) and see what (visibility), and workflows as a user drives them."""
