# Shell helpers shared by scripts/dev.sh and bench/run.sh (sourced).

# Runs a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: run as root, or install sudo, to: $*" >&2
        return 1
    fi
}
