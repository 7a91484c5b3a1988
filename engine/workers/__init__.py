"""Workers: the loop that claims due system tasks and runs each attempt (worker), and the system-task executors
(http, graphql, javascript, email, delay, echo) with what they share: host policy, redaction, config checks."""
