// Placeholder: the dashboard script is built on the web-ui branch.
