test "$(sh src/main.sh)" = "hello from greeter"
