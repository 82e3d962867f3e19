# node-gyp build of the addon, used when the package is installed from its tarball (`npm pack`,
# then `npm install sipp-X.tgz`): it compiles src/addon.c against the installed libsipp that
# `pkg-config sipp` names (`cmake --install`; put PREFIX/lib/pkgconfig on PKG_CONFIG_PATH for a
# prefix pkg-config does not search). Inside the Sipp tree CMake builds the same file instead.
{
  "targets": [
    {
      "target_name": "sipp",
      "sources": ["src/addon.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra"],
      "include_dirs": ["<!@(pkg-config --variable=includedir sipp)"],
      "libraries": ["<!@(pkg-config --libs sipp)", "-lpthread", "-lm"],
      "ldflags": ["-Wl,-rpath,<!@(pkg-config --variable=libdir sipp)"]
    }
  ]
}
