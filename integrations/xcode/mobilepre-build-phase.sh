#!/bin/bash
# mobilepre, as an Xcode Run Script build phase: builds the size-budgeted bundles and copies one
# profile's bundle into the app's resources.
#
# Build phase:  Shell /bin/bash,  Script:  "${SRCROOT}/path/to/mobilepre-build-phase.sh"
#               Input File Lists:  mobilepre-inputs.xcfilelist   Output File Lists:  mobilepre-outputs.xcfilelist
# With both lists, Xcode skips the phase while no input changed and every output exists.
#
# Build settings it reads (User-Defined; paths may use $(SRCROOT)):
#   MOBILEPRE              the mobilepre executable (Xcode's PATH is short: give the full path)
#   MOBILEPRE_MODEL        .keras, .h5 or SavedModel folder (empty: mobilepre's demo model)
#   MOBILEPRE_CALIBRATION  images for int8 calibration (and drift, unless MOBILEPRE_VALIDATION)
#   MOBILEPRE_VALIDATION, MOBILEPRE_LABELS, MOBILEPRE_CLASS_NAMES, MOBILEPRE_CONFIG   optional
#   MOBILEPRE_PROFILES     a folder of profile TOML files (empty: the shipped profiles)
#   MOBILEPRE_PROFILE      whose bundle goes into the app, e.g. ios
#   MOBILEPRE_BUNDLE_NAME  the bundle's folder in the app's resources (default: model)
#   MOBILEPRE_VERIFY_KEY   require the bundle's signature by this public key (optional)
#
# It writes only its declared outputs: the build output in $(DERIVED_FILE_DIR)/mobilepre and the bundle in
# $(TARGET_BUILD_DIR)/$(UNLOCALIZED_RESOURCES_FOLDER_PATH)/$(MOBILEPRE_BUNDLE_NAME) (plus mobilepre's
# candidate cache, ~/.cache/mobilepre, unless MOBILEPRE_BUILD_ARGS has --no-cache). A failed budget fails
# the build with mobilepre's one line as an Xcode error. Written for macOS's bash 3.2.
set -u

error() {
  echo "error: $*"  # Xcode lists "error: ..." lines in the Issue navigator
  exit 1
}

[ -n "${TARGET_BUILD_DIR:-}" ] || error "mobilepre-build-phase.sh runs as an Xcode Run Script phase (TARGET_BUILD_DIR is not set)"
[ "${ACTION:-build}" = "clean" ] && exit 0  # Xcode removes the derived files itself

mobilepre="${MOBILEPRE:-mobilepre}"
command -v "$mobilepre" >/dev/null 2>&1 ||
  error "mobilepre not found ('$mobilepre'): set the MOBILEPRE build setting to its full path (e.g. \$(SRCROOT)/.venv/bin/mobilepre)"

out="${DERIVED_FILE_DIR:?}/mobilepre"
dest="${TARGET_BUILD_DIR}/${UNLOCALIZED_RESOURCES_FOLDER_PATH:?}/${MOBILEPRE_BUNDLE_NAME:-model}"

# Run mobilepre; its "mobilepre: error:" / "mobilepre: failed:" line becomes an Xcode error.
run() {
  "$mobilepre" "$@" 2>&1 | while IFS= read -r line; do
    case "$line" in
      "mobilepre: error: "* | "mobilepre: failed: "*) echo "error: $line" ;;
      *) echo "$line" ;;
    esac
  done
  status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || exit "$status"
}

build=(build)
[ -n "${MOBILEPRE_MODEL:-}" ] && build+=("$MOBILEPRE_MODEL")
build+=(--out "$out" --force --quiet)
[ -n "${MOBILEPRE_CALIBRATION:-}" ] && build+=(--calibration "$MOBILEPRE_CALIBRATION")
[ -n "${MOBILEPRE_VALIDATION:-}" ] && build+=(--validation "$MOBILEPRE_VALIDATION")
[ -n "${MOBILEPRE_LABELS:-}" ] && build+=(--labels "$MOBILEPRE_LABELS")
[ -n "${MOBILEPRE_CLASS_NAMES:-}" ] && build+=(--class-names "$MOBILEPRE_CLASS_NAMES")
[ -n "${MOBILEPRE_CONFIG:-}" ] && build+=(--config "$MOBILEPRE_CONFIG")
[ -n "${MOBILEPRE_PROFILES:-}" ] && build+=(--profiles "$MOBILEPRE_PROFILES")
[ -n "${MOBILEPRE_PROFILE:-}" ] && build+=(--profile "$MOBILEPRE_PROFILE")
# shellcheck disable=SC2206  # MOBILEPRE_BUILD_ARGS is a list of flags, split on spaces on purpose
[ -n "${MOBILEPRE_BUILD_ARGS:-}" ] && build+=(${MOBILEPRE_BUILD_ARGS})

copy=(copy "$out" "$dest")
[ -n "${MOBILEPRE_PROFILE:-}" ] && copy+=(--profile "$MOBILEPRE_PROFILE")
[ -n "${MOBILEPRE_VERIFY_KEY:-}" ] && copy+=(--verify-key "$MOBILEPRE_VERIFY_KEY")

mkdir -p "${DERIVED_FILE_DIR}" || error "cannot create ${DERIVED_FILE_DIR}"
run "${build[@]}"
run "${copy[@]}"
