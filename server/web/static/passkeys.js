// Passkeys (WebAuthn) on Ostiary's pages. The pages' CSP allows no inline script: this file
// finds its forms by id and reads what it needs from data attributes and JSON blocks.
//
// - #passkey-enrol-form (the account's "Add a passkey" page): creates a credential from the
//   options in <script type="application/json" id="passkey-options"> and submits the answer.
// - #passkey (the sign-in and second-factor pages; its data-csrf and data-interaction name the
//   sign-in): asks /login/passkey/options for a challenge, gets a credential and posts the
//   answer to /login/passkey. On the sign-in page the browser may also offer
//   passkeys in the username field's autofill (conditional mediation).
//
// Messages come translated from the page (data-* attributes of the form).
"use strict";

(function () {
  function bytes(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  }

  function text(buffer) {
    let binary = "";
    new Uint8Array(buffer).forEach((b) => { binary += String.fromCharCode(b); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: bytes(json.challenge),
      user: Object.assign({}, json.user, { id: bytes(json.user.id) }),
      excludeCredentials: (json.excludeCredentials || []).map((c) => Object.assign({}, c, { id: bytes(c.id) })),
    });
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: bytes(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => Object.assign({}, c, { id: bytes(c.id) })),
    });
  }

  function answer(credential) {
    if (credential.toJSON) {
      return JSON.stringify(credential.toJSON());
    }
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: text(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = text(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = text(response.authenticatorData);
      json.response.signature = text(response.signature);
      json.response.userHandle = response.userHandle ? text(response.userHandle) : null;
    }
    return JSON.stringify(json);
  }


  function say(form, message) {
    const box = document.getElementById("passkey-error");
    box.textContent = message;
    box.hidden = false;
    box.focus();
  }

  function failure(form, error) {
    if (error && error.name === "NotAllowedError") {
      return form.dataset.cancelled;
    }
    if (error && error.name === "InvalidStateError") {
      return form.dataset.registered || form.dataset.failed;
    }
    return (error && error.message && error.fromServer) ? error.message : form.dataset.failed;
  }

  function supported(form) {
    if (window.PublicKeyCredential && navigator.credentials) {
      return true;
    }
    const note = document.getElementById("passkey-unsupported");
    if (note) {
      note.hidden = false;
    }
    form.hidden = true;
    return false;
  }

  async function options(form) {
    const body = new URLSearchParams({ csrf_token: form.dataset.csrf, interaction: form.dataset.interaction });
    const response = await fetch("/login/passkey/options", { method: "POST", body: body, credentials: "same-origin" });
    const json = await response.json();
    if (!response.ok) {
      const error = new Error(json.error || form.dataset.failed);
      error.fromServer = true;
      throw error;
    }
    return json;
  }

  async function signIn(form, mediation, signal) {
    const json = await options(form);
    const request = { publicKey: requestOptions(json) };
    if (mediation) {
      request.mediation = mediation;
      request.signal = signal;
    }
    const credential = await navigator.credentials.get(request);
    const post = document.createElement("form");
    post.method = "post";
    post.action = "/login/passkey";
    const values = { csrf_token: form.dataset.csrf, interaction: form.dataset.interaction, answer: answer(credential) };
    Object.entries(values).forEach(([name, value]) => {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      post.append(input);
    });
    document.body.append(post);
    post.submit();
  }

  function setUpSignIn(form) {
    if (!supported(form)) {
      return;
    }
    let autofill = null;
    document.getElementById("passkey-sign-in").addEventListener("click", async () => {
      if (autofill) {
        autofill.abort(); // one ceremony at a time
      }
      try {
        await signIn(form);
      } catch (error) {
        say(form, failure(form, error));
      }
    });
    if (form.dataset.autofill === "on" && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then((available) => {
        if (!available) {
          return;
        }
        autofill = new AbortController();
        signIn(form, "conditional", autofill.signal).catch(() => { /* dismissed, or replaced by the button */ });
      });
    }
  }

  function setUpEnrolment(form) {
    if (!supported(form)) {
      return;
    }
    form.addEventListener("submit", async (event) => {
      if (form.elements.answer.value) {
        return;
      }
      event.preventDefault();
      try {
        const json = JSON.parse(document.getElementById("passkey-options").textContent);
        const credential = await navigator.credentials.create({ publicKey: creationOptions(json) });
        form.elements.answer.value = answer(credential);
        form.submit();
      } catch (error) {
        say(form, failure(form, error));
      }
    });
  }

  const signInForm = document.getElementById("passkey");
  if (signInForm) {
    setUpSignIn(signInForm);
  }
  const enrolForm = document.getElementById("passkey-enrol-form");
  if (enrolForm) {
    setUpEnrolment(enrolForm);
  }
})();
