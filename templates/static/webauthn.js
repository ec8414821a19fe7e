// Security keys and passkeys (WebAuthn): the browser's part of the ceremony.
// A form with data-webauthn="create" (settings: add a key) or "get" (the challenge) carries the
// server's options (JSON, base64url fields) in data-options. On submit this script asks the
// browser for a credential, puts its JSON answer into the form's hidden field and posts the
// form as usual (with its CSRF token). A button with data-key-confirm does the same for a
// settings form that otherwise takes a code. Without JavaScript the other ways keep working; a
// browser without WebAuthn (or a page that is not a secure context) is told so.
(function () {
  "use strict";
  function bytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function text(buffer) {
    if (!buffer) return null;
    var view = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < view.length; i++) raw += String.fromCharCode(view[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: bytes(d.id), transports: d.transports };
    });
  }
  function creationOptions(o) {
    var options = Object.assign({}, o, {
      challenge: bytes(o.challenge),
      user: Object.assign({}, o.user, { id: bytes(o.user.id) }),
      excludeCredentials: descriptors(o.excludeCredentials)
    });
    return { publicKey: options };
  }
  function requestOptions(o) {
    var options = Object.assign({}, o, {
      challenge: bytes(o.challenge),
      allowCredentials: descriptors(o.allowCredentials)
    });
    return { publicKey: options };
  }
  function answer(credential) {
    var r = credential.response, response = { clientDataJSON: text(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = text(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = text(r.authenticatorData);
      response.signature = text(r.signature);
      response.userHandle = text(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id, rawId: text(credential.rawId), type: credential.type, response: response,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("form[data-webauthn]"), function (form) {
    var kind = form.getAttribute("data-webauthn");
    var field = form.querySelector(kind === "create" ? "[name=credential]" : "[name=assertion]");
    var error = form.querySelector("[data-key-error]");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      Array.prototype.forEach.call(form.querySelectorAll(".js-only"), function (el) { el.style.display = "none"; });
      Array.prototype.forEach.call(document.querySelectorAll("[data-key-unsupported]"), function (el) { el.hidden = false; });
    }
    form.addEventListener("submit", function (event) {
      if (field.value) return;  // the answer is in: post the form
      event.preventDefault();
      if (!form.reportValidity()) return;
      if (error) error.hidden = true;
      var options = JSON.parse(form.getAttribute("data-options"));
      var asked = kind === "create" ? navigator.credentials.create(creationOptions(options))
        : navigator.credentials.get(requestOptions(options));
      asked.then(function (credential) {
        field.value = answer(credential);
        form.submit();
      }, function () {
        if (error) { error.hidden = false; error.classList.add("error"); }
      });
    });
  });
  // Settings: a confirmation (turn off, new recovery codes, remove the last key) answered by a
  // key instead of a code: the form's other checks (the "I understand" box) still apply.
  Array.prototype.forEach.call(document.querySelectorAll("[data-key-confirm]"), function (button) {
    var form = button.form, field = form.querySelector("[name=assertion]");
    var error = form.querySelector("[data-key-error]");
    var codes = form.querySelectorAll("[name=code]");
    function need(code) { Array.prototype.forEach.call(codes, function (c) { c.required = code; }); }
    if (!window.PublicKeyCredential || !navigator.credentials) { button.style.display = "none"; return; }
    button.addEventListener("click", function () {
      need(false);
      var valid = form.reportValidity();
      need(true);
      if (!valid) return;
      error.hidden = true;
      var options = JSON.parse(button.getAttribute("data-options"));
      navigator.credentials.get(requestOptions(options)).then(function (credential) {
        field.value = answer(credential);
        Array.prototype.forEach.call(codes, function (c) { c.value = ""; });
        form.submit();
      }, function () {
        error.hidden = false;
        error.classList.add("error");
      });
    });
  });
})();
