// The plr extension: highlighting comes from the grammar in syntaxes/; everything else from
// `plr lsp`, started over stdio for every .plr file (settings: plr.server.command/args).
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("plr");
  const command = config.get("server.command", "plr");
  const args = config.get("server.args", ["lsp"]);
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "plr" }],
    // new, deleted and renamed policies and data files change which files are checked together
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.{plr,json}") },
  };
  client = new LanguageClient("plr", "plr language server", serverOptions, clientOptions);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
